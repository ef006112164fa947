"""What the fake answers with: responses, HubSpot-shaped error bodies, injectable faults."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = (
    "status",  # an HTTP error status with a HubSpot-shaped body (5xx, 429, 4xx)
    "timeout",  # no answer in time
    "reset",  # the connection is reset
    "truncated",  # 200 with a JSON body cut in half
    "non_json",  # an HTML error page from a proxy
    "missing_fields",  # 200 without access_token / refresh_token
    "invalid_grant",  # 400 invalid_grant, as for a revoked refresh token
)


@dataclass
class Fault:
    """A failure to inject; ``endpoint`` is ``token``, ``introspect``, ``revoke`` or ``api``."""

    kind: str
    status: int = 500
    retry_after: float | None = None
    endpoint: str = "token"
    times: int = 1
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault kind {self.kind!r}; pick one of {FAULT_KINDS}.")


@dataclass
class FakeResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class FakeTimeout(Exception):
    """Raised by :meth:`FakeHubSpot.handle` when a ``timeout`` fault fires."""


class FakeConnectionReset(Exception):
    """Raised by :meth:`FakeHubSpot.handle` when a ``reset`` fault fires."""


JSON_HEADERS = {"Content-Type": "application/json;charset=utf-8"}


def json_response(status: int, body: dict[str, Any]) -> FakeResponse:
    return FakeResponse(status, json.dumps(body).encode(), dict(JSON_HEADERS))


def error_response(status: int, category: str, message: str) -> FakeResponse:
    return json_response(
        status,
        {
            "status": "error",
            "message": message,
            "category": category,
            "correlationId": str(uuid.uuid4()),
        },
    )


def oauth_error(error: str, status: str, message: str) -> FakeResponse:
    return json_response(
        400,
        {
            "error": error,
            "error_description": message,
            "status": status,
            "message": message,
            "category": "BAD_REQUEST",
            "correlationId": str(uuid.uuid4()),
        },
    )
