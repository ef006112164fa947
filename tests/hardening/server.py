"""FakeHubSpot over real HTTP: a ThreadingHTTPServer on 127.0.0.1 whose handler calls
``FakeHubSpot.handle``, for code that runs in another process (or through urllib3)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hubspot_connect.testing import FakeConnectionReset, FakeHubSpot, FakeTimeout


class FakeHubSpotServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeHubSpot) -> None:
        self.fake = fake
        #: Set when a request arrived / when its answer was written (then cleared by tests).
        self.received = threading.Event()
        self.handled = threading.Event()
        self.answered = threading.Event()
        self.answers: list[int] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeHubSpotServer
    protocol_version = "HTTP/1.0"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.received.set()
        try:
            answer = self.server.fake.handle(
                self.command, self.path, dict(self.headers.items()), body
            )
        except FakeTimeout:
            self.server.handled.set()
            # Hold the socket without answering until the client gives up.
            self.server.answered.wait(30)
            return
        except FakeConnectionReset:
            self.server.handled.set()
            self.close_connection = True
            return
        self.server.handled.set()
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
            self.wfile.flush()
        except OSError:  # the client died while we were answering
            return
        self.server.answers.append(answer.status)
        self.server.answered.set()

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(fake: FakeHubSpot) -> Iterator[FakeHubSpotServer]:
    server = FakeHubSpotServer(fake)
    thread = threading.Thread(target=server.serve_forever, name="fake-hubspot", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
