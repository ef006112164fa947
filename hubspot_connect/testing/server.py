"""FakeHubSpotServer: :class:`FakeHubSpot` over real HTTP on 127.0.0.1, for other processes."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .fake import FakeHubSpot
from .wire import FakeConnectionReset, FakeTimeout


class FakeHubSpotHandler(BaseHTTPRequestHandler):
    """Serves one TCP connection of a :class:`FakeHubSpotServer` (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024  # headers and body leave in one send()
    server: FakeHubSpotServer

    def setup(self) -> None:
        super().setup()
        # No Nagle delay: answers are small and the client waits for each one.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.serve_fake()

    def do_POST(self) -> None:
        self.serve_fake()

    def do_PUT(self) -> None:
        self.serve_fake()

    def do_PATCH(self) -> None:
        self.serve_fake()

    def do_DELETE(self) -> None:
        self.serve_fake()

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def serve_fake(self) -> None:
        body = self.read_body()
        server = self.server
        server.received.set()
        try:
            answer = server.fake.handle(self.command, self.path, dict(self.headers), body)
        except FakeTimeout:
            server.handled.set()
            server.closing.wait(server.timeout_hold)  # say nothing until the client gives up
            self.close_connection = True
            return
        except FakeConnectionReset:
            server.handled.set()
            self.close_connection = True
            return
        server.handled.set()
        server.answers.append(answer.status)  # before the client can see it
        try:
            self.reply(answer.status, answer.body, answer.headers)
        except OSError:  # the client went away while we were answering
            self.close_connection = True
            return
        server.answered.set()

    def reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


class FakeHubSpotServer(ThreadingHTTPServer):
    """``FakeHubSpot`` over real HTTP on 127.0.0.1, for code in other processes.

    ::

        with FakeHubSpotServer() as server:       # listens on a free port
            env["HUBSPOT_API_BASE_URL"] = server.url
            server.fake.issue_tokens(12345678)

    The events ``received``, ``handled`` and ``answered`` (set once an answer was
    written) and the ``answers`` list (each status as it is sent) let a test act at a
    precise moment, e.g. kill a client mid-refresh.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        fake: FakeHubSpot | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        handler: type[FakeHubSpotHandler] = FakeHubSpotHandler,
        timeout_hold: float = 30.0,
    ) -> None:
        super().__init__((host, port), handler)
        self.fake = fake or FakeHubSpot(api_base_url=self.url)
        self.timeout_hold = timeout_hold
        self.received = threading.Event()
        self.handled = threading.Event()
        self.answered = threading.Event()
        self.closing = threading.Event()
        self.answers: list[int] = []
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeHubSpotServer:
        self._thread = threading.Thread(target=self.serve_forever, name="fake-hubspot")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeHubSpotServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
