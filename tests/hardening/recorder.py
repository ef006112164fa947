"""Test-side instrumentation of a FakeHubSpot instance (the transport fake, not the app).

``HandleRecorder`` wraps one instance's ``handle`` to record every request with its
headers, and tells a ``fault_plan`` which form (refresh token, code) it is answering:
``FakeHubSpot.requests`` records no headers and ``fault_plan`` only gets the endpoint.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from hubspot_connect.testing import FakeHubSpot, FakeResponse


@dataclass
class SeenRequest:
    method: str
    url: str
    headers: dict[str, str]
    form: dict[str, str]
    status: int | None = None


@dataclass
class HandleRecorder:
    fake: FakeHubSpot
    seen: list[SeenRequest] = field(default_factory=list)
    local: threading.local = field(default_factory=threading.local)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self) -> HandleRecorder:
        original = self.fake.handle

        def handle(
            method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b""
        ) -> FakeResponse:
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            request = SeenRequest(method, url, dict(headers or {}), form)
            with self.lock:
                self.seen.append(request)
            self.local.form = form
            try:
                answer = original(method, url, headers, body)
            finally:
                self.local.form = None
            request.status = answer.status
            return answer

        self.fake.handle = handle  # type: ignore[method-assign]
        return self

    @property
    def current_form(self) -> dict[str, Any]:
        """The form of the request this thread is answering right now."""
        return getattr(self.local, "form", None) or {}

    def bearer_tokens(self) -> list[str]:
        tokens = []
        for request in self.seen:
            auth = {k.lower(): v for k, v in request.headers.items()}.get("authorization", "")
            if auth:
                tokens.append(auth.removeprefix("Bearer "))
        return tokens
