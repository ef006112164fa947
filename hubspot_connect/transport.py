"""HTTP plumbing shared by the OAuth client and the API session: one User-Agent, sessions
that read the environment once, ``Retry-After``, redaction of secrets from error text."""

from __future__ import annotations

import email.utils
import functools
import math
import os
from datetime import datetime, timezone
from typing import Any
from urllib.parse import SplitResult, urlsplit

import requests

from . import __version__

USER_AGENT = f"django-hubspot-connect/{__version__}"
MAX_ERROR_TEXT = 300


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "inf" and "nan" parse as floats but are no delay anyone should wait for.
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = datetime.now(timezone.utc).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text[:MAX_ERROR_TEXT]


def new_session(base_url: str) -> requests.Session:
    """A session that reads proxy and CA settings from the environment once.

    With ``trust_env`` on, requests scans ``os.environ`` and looks for ``~/.netrc`` on
    every request (a fifth of a refresh's CPU). ``.netrc`` credentials are never wanted
    here: every secret travels in the form body. TLS verification stays on.
    """
    session = requests.Session()
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    return session


def json_object(response: requests.Response) -> dict[str, Any] | None:
    """The response's body if it is a JSON object, else ``None``."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def api_path(url: str, base_url: str) -> str | None:
    """The path of ``url`` below ``base_url`` (HubSpot's API base) if ``url`` goes to that
    scheme and host, else ``None``: only such requests carry the Bearer token."""
    base, target = _split(base_url), urlsplit(url)
    if (target.scheme, target.netloc) != (base.scheme, base.netloc):
        return None
    path, prefix = target.path, base.path.rstrip("/")
    if prefix and path.startswith(prefix):
        path = path[len(prefix) :]
    return path or "/"


@functools.lru_cache(maxsize=8)
def _split(url: str) -> SplitResult:
    return urlsplit(url)
