"""Hostile input at the two views: arbitrary callback query strings and ``next`` values.

Every property runs a fixed 500 examples, derandomized, so CI sees the same inputs
each run. The callback is reached through the real URL routing and middleware
(``django.test.Client`` with a raw ``QUERY_STRING``).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urljoin, urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubspot_connect.models import HubSpotConnection
from hubspot_connect.state import SESSION_KEY
from hubspot_connect.testing import FakeHubSpot

HARD = settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

CALLBACK = "/hubspot/callback/"
TABLE = HubSpotConnection._meta.db_table
WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b.*?" + re.escape(TABLE), re.I | re.S)


# -- building raw query strings --------------------------------------------------------------


def _as_wsgi(raw: bytes) -> str:
    """WSGI hands the query string over as latin-1 decoded bytes."""
    return raw.decode("latin-1")


percent_bytes = st.binary(min_size=1, max_size=24).map(
    lambda data: "".join(f"%{byte:02{'x' if byte % 2 else 'X'}}" for byte in data)
)
fixed_nasties = st.sampled_from(
    [
        "",
        "%ff%fe",
        "%FF%FE%00",
        "%",
        "%%",
        "%zz",
        "%e2%82",  # a truncated UTF-8 sequence
        "%00",
        "+",
        "%20",
        "=",
        "==",
        "&",
        "null",
        "undefined",
        "<script>alert(1)</script>",
        "%3Cscript%3Ealert(1)%3C/script%3E",
        "' OR '1'='1",
        "../../etc/passwd",
        _as_wsgi("\u202e".encode()),  # right-to-left override, raw UTF-8
        "%E2%80%AE",
        "na1-00000000-0000-0000-0000-000000000000",
        "access_denied",
    ]
)
raw_unicode = st.text(max_size=40).map(
    lambda text: _as_wsgi(text.encode("utf-8", "surrogatepass"))
)
escaped_unicode = st.text(max_size=40).map(
    lambda text: quote(text.encode("utf-8", "surrogatepass"), safe="")
)
huge = st.integers(min_value=2_000, max_value=20_000).map(lambda size: "A" * size)
names = st.one_of(
    st.sampled_from(["state", "code", "error", "error_description", "next", "scope"]),
    st.sampled_from(["STATE", "state[]", "sta%74e", "state%00", "code ", ""]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_%", max_size=8),
)


def values(extra: list[str]) -> st.SearchStrategy[str]:
    strategies = [percent_bytes, fixed_nasties, raw_unicode, escaped_unicode, huge]
    if extra:
        strategies.append(st.sampled_from(extra))
    return st.one_of(*strategies)


def query_strings(extra_values: list[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(names, values(extra_values), st.booleans()).map(
        lambda item: f"{item[0]}={item[1]}" if item[2] or item[1] else item[0]
    )
    return st.tuples(st.lists(pair, max_size=7), st.sampled_from(["&", "&", ";", "&&"])).map(
        lambda parts: parts[1].join(parts[0])
    )


# -- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def root_client(client: Client, django_user_model: Any, db: None) -> Client:
    """A superuser: allowed to connect, and without the permission queries of a plain
    user, so 500 examples stay quick. Only the callback's input differs between examples."""
    client.force_login(django_user_model.objects.create_superuser("root", "r@x.example", "pw"))
    return client


@pytest.fixture
def stale_states(
    root_client: Client, django_user_model: Any, fake_hubspot: FakeHubSpot
) -> Iterator[dict[str, str]]:
    """Real states that must not be accepted: another session's, a used one, an expired one."""
    other = Client()
    other.force_login(django_user_model.objects.get(username="root"))
    other_state = _state_of(other.post(reverse("hubspot_connect:connect")))

    start = root_client.post(reverse("hubspot_connect:connect"))
    used_state = _state_of(start)
    assert root_client.get(fake_hubspot.approve(start["Location"])).status_code == 302

    expired_state = _state_of(root_client.post(reverse("hubspot_connect:connect")))
    session = root_client.session
    pending = session[SESSION_KEY]
    pending[expired_state]["created_at"] = time.time() - 3600
    session[SESSION_KEY] = pending
    session.save()
    fake_hubspot.requests.clear()
    return {"other": other_state, "used": used_state, "expired": expired_state}


def _state_of(response: Any) -> str:
    assert response.status_code == 302, response.content
    return dict(parse_qsl(urlsplit(response["Location"]).query))["state"]


def _rows() -> list[dict[str, Any]]:
    return list(HubSpotConnection.objects.order_by("pk").values())


def _writes(context: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in context.captured_queries if WRITE.search(query["sql"])]


def _callback(client: Client, raw_query: str) -> Any:
    # QUERY_STRING as a WSGI server passes it: no re-encoding by the test client.
    return client.get(CALLBACK, QUERY_STRING=raw_query) if raw_query else client.get(CALLBACK)


# -- the callback: no valid state, no HTTP, no write, a 400 -----------------------------------


@HARD
@given(data=st.data())
def test_callback_without_a_valid_state_is_a_400_and_touches_nothing(
    data: st.DataObject,
    root_client: Client,
    fake_hubspot: FakeHubSpot,
    stale_states: dict[str, str],
) -> None:
    before = _rows()
    assert before, "the fixture connected one portal; the test must see it unchanged"
    raw_query = data.draw(query_strings(list(stale_states.values())), label="query")
    with CaptureQueriesContext(connection) as queries:
        response = _callback(root_client, raw_query)
    assert response.status_code == 400, (raw_query[:200], response.content[:500])
    assert fake_hubspot.requests == []
    assert _writes(queries) == []
    assert _rows() == before


@pytest.mark.parametrize(
    "build",
    [
        lambda s: f"state={s['other']}&code=na1-x",
        lambda s: f"state={s['used']}&code=na1-x",
        lambda s: f"state={s['expired']}&code=na1-x",
        lambda s: f"state={s['expired']}&error=access_denied",
        lambda s: f"code=na1-x&error=access_denied&state={s['other']}",
        lambda s: f"state={s['other']}&state={s['other']}&code=na1-x",
        lambda s: "code=na1-x",
        lambda s: "state=&code=na1-x",
        lambda s: "state=%ff%fe&code=%ff%fe",
    ],
    ids=[
        "other-session",
        "replayed",
        "expired",
        "expired-declined",
        "code-and-error",
        "repeated",
        "missing",
        "empty",
        "non-utf8",
    ],
)
def test_named_stale_states_are_rejected(
    build: Callable[[dict[str, str]], str],
    root_client: Client,
    fake_hubspot: FakeHubSpot,
    stale_states: dict[str, str],
) -> None:
    before = _rows()
    with CaptureQueriesContext(connection) as queries:
        response = _callback(root_client, build(stale_states))
    assert response.status_code == 400
    assert fake_hubspot.requests == []
    assert _writes(queries) == []
    assert _rows() == before


def test_an_expired_state_is_gone_after_one_try(
    root_client: Client, fake_hubspot: FakeHubSpot, stale_states: dict[str, str]
) -> None:
    expired = stale_states["expired"]
    assert expired in root_client.session[SESSION_KEY]
    assert _callback(root_client, f"state={expired}&code=na1-x").status_code == 400
    assert expired not in root_client.session.get(SESSION_KEY, {})


def test_code_and_error_with_a_valid_state_consume_it_and_send_nothing(
    root_client: Client, fake_hubspot: FakeHubSpot, db: None
) -> None:
    start = root_client.post(reverse("hubspot_connect:connect"))
    state = _state_of(start)
    callback = fake_hubspot.approve(start["Location"])
    code = dict(parse_qsl(urlsplit(callback).query))["code"]
    response = _callback(root_client, f"state={state}&code={code}&error=access_denied")
    assert response.status_code == 400
    assert fake_hubspot.requests == []
    assert not HubSpotConnection.objects.exists()
    # The state is spent: the same callback without the error is refused too.
    assert _callback(root_client, f"state={state}&code={code}").status_code == 400
    assert fake_hubspot.requests == []


# -- the callback with a valid state and hostile everything else --------------------------------


@HARD
@given(data=st.data())
def test_callback_with_a_valid_state_and_hostile_params_never_errors_or_writes(
    data: st.DataObject, root_client: Client, fake_hubspot: FakeHubSpot, db: None
) -> None:
    start = root_client.post(reverse("hubspot_connect:connect"))
    state = _state_of(start)
    fake_hubspot.requests.clear()
    pieces = data.draw(
        st.lists(
            st.one_of(
                st.tuples(st.sampled_from(["code", "error", "error_description"]), values([])),
                st.tuples(names, values([])),
            ),
            max_size=5,
        ),
        label="params",
    )
    position = data.draw(st.integers(min_value=0, max_value=len(pieces)), label="position")
    parts = [f"{name}={value}" for name, value in pieces]
    parts.insert(position, f"state={state}")
    raw_query = "&".join(parts)
    with CaptureQueriesContext(connection) as queries:
        response = _callback(root_client, raw_query)
    assert response.status_code == 400, (raw_query[:200], response.content[:500])
    assert _writes(queries) == []
    assert not HubSpotConnection.objects.exists()
    # Only the code exchange may have been tried, and only for a single code with no error.
    parsed = [name for name, _ in parse_qsl(raw_query, keep_blank_values=True)]
    if fake_hubspot.requests:
        assert [path for _, path, _ in fake_hubspot.requests] == ["/oauth/2026-03/token"]
        assert parsed.count("code") == 1
        assert "error" not in parsed
    assert b"<script>alert(1)" not in response.content


# -- open redirects through ``next`` ------------------------------------------------------------

SITE = "http://testserver/hubspot/callback/"
C0_AND_SPACE = "".join(chr(code) for code in range(0x21))


def leaves_site(location: str) -> bool:
    """Whether a browser following ``location`` from the callback would leave testserver.

    A browser strips leading/trailing C0 controls and spaces, drops tabs and newlines
    anywhere and reads a backslash as a slash, so this does too before resolving.
    """
    value = re.sub(r"[\t\n\r]", "", location.strip(C0_AND_SPACE)).replace("\\", "/")
    resolved = urlsplit(urljoin(SITE, value))
    return resolved.scheme not in ("http", "https") or resolved.hostname != "testserver"


OPEN_REDIRECTS = [
    "//evil.example",
    "///evil.example",
    "////evil.example/",
    "https:evil.example",
    "https:/evil.example",
    "http:\\\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/\\evil.example",
    "/\\/evil.example",
    "/%5Cevil.example",
    "/%2F/evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "http://testserver@evil.example",
    "http://testserver:80@evil.example/",
    "http://evil.example#@testserver",
    "http://evil.example?@testserver",
    "http://testserver.evil.example/",
    "http://evil.example\\@testserver/",
    "HtTpS://evil.example",
    "HTTP://EVIL.EXAMPLE",
    "/\t/evil.example",
    "/\n/evil.example",
    "\t//evil.example",
    " //evil.example",
    "\x00//evil.example",
    "//evil.example\t",
    "\uff0f\uff0fevil.example",  # fullwidth solidus
    "\u2215\u2215evil.example",  # division slash
    "\uff3c\uff3cevil.example",  # fullwidth reverse solidus
    "https://evil\u3002example",  # ideographic full stop
    "https://\uff45\uff56\uff49\uff4c.example",  # fullwidth letters
    "http://[::1]/",
    "http://127.0.0.1/",
    "ftp://testserver/",
    "/after/",
    "http://testserver/after/",
    "/after/?x=//evil.example",
]


@pytest.fixture
def final_location(root_client: Client, fake_hubspot: FakeHubSpot) -> Callable[[str], str]:
    """Run connect (with ``next``) → consent → callback; return the callback's Location."""
    client = root_client

    def run(next_url: str) -> str:
        start = client.post(
            reverse("hubspot_connect:connect"), QUERY_STRING="next=" + quote(next_url, safe="")
        )
        assert start.status_code == 302, start.content
        response = client.get(fake_hubspot.approve(start["Location"]))
        assert response.status_code == 302, (next_url, response.content[:500])
        return str(response["Location"])

    return run


def test_leaves_site_is_not_a_tautology() -> None:
    assert leaves_site("//evil.example")
    assert leaves_site("/\\evil.example")
    assert leaves_site("javascript:alert(1)")
    assert leaves_site("https:evil.example")
    assert not leaves_site("/after/")
    assert not leaves_site("http://testserver/x")


@pytest.mark.parametrize("next_url", OPEN_REDIRECTS)
def test_known_open_redirects_stay_on_site(
    next_url: str, final_location: Callable[[str], str]
) -> None:
    location = final_location(next_url)
    assert not leaves_site(location), (next_url, location)


def test_a_safe_next_is_honoured(final_location: Callable[[str], str]) -> None:
    # Proves the redirect checks above look at a redirect that does follow ``next``.
    assert final_location("/after/?tab=hubspot") == "/after/?tab=hubspot"


next_parts = st.tuples(
    st.sampled_from(["", "/", "//", "///", "\\", "/\\", "\\/", " ", "\t", "\x00", "%2F"]),
    st.sampled_from(["", "http:", "https:", "HTTPS:", "hTtP:", "javascript:", "//", "ftp:"]),
    st.sampled_from(["", "//", "/\\", "\\\\", "\t//", "/\n/"]),
    st.sampled_from(
        [
            "evil.example",
            "testserver@evil.example",
            "evil.example#@testserver",
            "testserver.evil.example",
            "testserver",
            "\uff45vil.example",
            "",
        ]
    ),
    st.text(max_size=12),
).map("".join)


@HARD
@given(next_url=st.one_of(next_parts, st.text(max_size=40)))
def test_generated_next_values_never_leave_the_site(
    next_url: str, final_location: Callable[[str], str]
) -> None:
    location = final_location(next_url)
    assert not leaves_site(location), (next_url, location)


@pytest.mark.parametrize(
    "next_url", ["//\t/evil.example", "//\n//evil.example", "//\r/\\testserver@evil.example"]
)
def test_next_with_a_tab_or_newline_after_two_slashes_stays_on_site(
    next_url: str, final_location: Callable[[str], str]
) -> None:
    location = final_location(next_url)
    assert not leaves_site(location), (next_url, location)


# -- api_session: the bearer token only ever goes to HubSpot's API host ---------------------------

url_prefixes = st.sampled_from(
    [
        "",
        "/",
        "//",
        "https://api.hubapi.com",
        "https://api.hubapi.com:443",
        "http://api.hubapi.com",
        "HTTPS://API.HUBAPI.COM",
        "https://api.hubapi.com.evil.example",
        "https://api.hubapi.com@evil.example",
        "https://api.hubapi.com\\@evil.example",
        "https://api.hubapi.com#@evil.example",
        "https://api.hubapi.com?@evil.example",
        "https://evil.example/https://api.hubapi.com",
        "https://evil.example?https://api.hubapi.com",
        "https://evil.example",
        "https://evil.example#https://api.hubapi.com",
        "https:evil.example",
        "https:/evil.example",
        "https:///evil.example",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https://api.hubapi.com%2f@evil.example",
        "https://api.hubapi.com\t@evil.example",
        "https://user:pass@api.hubapi.com",
        "ftp://api.hubapi.com",
    ]
)
api_urls = st.tuples(
    url_prefixes,
    st.sampled_from(["", "/", "/crm/v3/objects/contacts", "@evil.example/", ".evil.example/"]),
    st.text(max_size=16),
).map("".join)


def bearer_targets(url: str) -> list[str]:
    """The URLs ``api_session(...).get(url)`` sent a Bearer token to."""
    import requests
    import responses
    from urllib3.exceptions import HTTPError as Urllib3Error

    from hubspot_connect.tokens import api_session

    sent: list[tuple[str, str]] = []

    def record(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        sent.append((request.url or "", request.headers.get("Authorization") or ""))
        return 200, {}, "{}"

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for method in ("GET", "POST"):
            mock.add_callback(method, re.compile(r".*"), callback=record)
        with contextlib.suppress(
            requests.RequestException, ValueError, UnicodeError, Urllib3Error
        ):
            api_session(12345678).get(url)
    # (A user:password in the URL becomes Basic auth, by requests; not our token.)
    return [target for target, auth in sent if auth.startswith("Bearer ")]


def test_bearer_targets_sees_the_token(make_connection: Callable[..., HubSpotConnection]) -> None:
    make_connection(12345678)
    assert bearer_targets("/crm/v3/objects/contacts") == [
        "https://api.hubapi.com/crm/v3/objects/contacts"
    ]
    assert bearer_targets("https://evil.example/") == []


@HARD
@given(url=st.one_of(api_urls, st.text(max_size=40)))
def test_api_session_sends_the_bearer_token_only_to_hubspot(
    url: str, make_connection: Callable[..., HubSpotConnection]
) -> None:
    if not HubSpotConnection.objects.exists():
        make_connection(12345678)
    for target in bearer_targets(url):
        parts = urlsplit(target)
        assert (parts.scheme, parts.hostname, parts.port) == ("https", "api.hubapi.com", None)
        assert "@" not in parts.netloc, target
