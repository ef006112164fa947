"""FakeHubSpot served over real HTTP, in its own process, for the benchmarks.

``python -m benchmarks.fake_server --latency 0.05`` prints ``PORT <n>`` once it listens
on 127.0.0.1. HTTP/1.1 keep-alive, one thread per TCP connection, TCP_NODELAY on every
accepted socket and one ``send()`` per response, so neither the server's CPU (it runs in
its own process) nor Nagle's algorithm is charged to the code under test.

Besides FakeHubSpot's endpoints it answers three of its own, under ``/_bench/``:

* ``POST /_bench/seed`` ``{"portals": [..], "expires_in": s}``: issue tokens (so the
  fake knows them) and return them in the same order;
* ``GET /_bench/stats``: requests per endpoint, TCP connections that carried them;
* ``POST /_bench/reset-stats``: zero the counters (the tokens stay).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
from collections import Counter
from typing import Any

from hubspot_connect.testing import FakeHubSpot, FakeHubSpotHandler, FakeHubSpotServer

CLIENT_ID = "bench-client-id"
CLIENT_SECRET = "bench-client-secret"
SCOPES = ["oauth", "crm.objects.contacts.read"]
_serials = itertools.count(1)  # one number per accepted TCP connection


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.connections: set[int] = set()
        self.generation = 0

    def count(self, handler: BenchHandler, path: str) -> None:
        with self.lock:
            self.requests[path] += 1
            if handler.counted_in != self.generation:
                handler.counted_in = self.generation
                self.connections.add(handler.serial)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": dict(self.requests),
                "total_requests": sum(self.requests.values()),
                "tcp_connections": len(self.connections),
            }

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.connections.clear()
            self.generation += 1


class BenchHandler(FakeHubSpotHandler):
    """The package's handler, plus per-connection counting and the ``/_bench/`` endpoints."""

    stats: Stats
    counted_in = -1  # the stats generation this TCP connection was last counted in

    def setup(self) -> None:
        super().setup()
        self.serial = next(_serials)

    def serve_fake(self) -> None:
        if self.path.startswith("/_bench/"):
            self._bench(self.command, self.read_body())
            return
        self.stats.count(self, self.path.split("?", 1)[0])
        super().serve_fake()

    def _bench(self, method: str, body: bytes) -> None:
        if method == "GET" and self.path == "/_bench/stats":
            self._json(self.stats.snapshot())
        elif method == "POST" and self.path == "/_bench/reset-stats":
            self.stats.reset()
            self._json({"ok": True})
        elif method == "POST" and self.path == "/_bench/seed":
            request = json.loads(body)
            expires_in = int(request.get("expires_in", 1800))
            tokens = [
                self.server.fake.issue_tokens(int(portal), SCOPES, expires_in=expires_in)
                for portal in request["portals"]
            ]
            self._json({"tokens": tokens})
        else:
            self.reply(404, b"{}", {"Content-Type": "application/json"})

    def _json(self, data: dict[str, Any]) -> None:
        self.reply(200, json.dumps(data).encode(), {"Content-Type": "application/json"})


def serve(latency: float, port: int = 0) -> None:
    fake = FakeHubSpot(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        api_base_url="http://127.0.0.1",
        latency=latency,
    )
    fake.requests = _Discard()  # the request log would grow without bound
    handler = type("Handler", (BenchHandler,), {"stats": Stats()})
    server = FakeHubSpotServer(fake, port=port, handler=handler)
    server.answers = _Discard()
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class _Discard(list):  # type: ignore[type-arg]
    def append(self, item: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    serve(args.latency, args.port)


if __name__ == "__main__":
    sys.exit(main())
