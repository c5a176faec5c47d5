"""A local web server for integration tests: receives pypbx's notifications and serves the
audio files Play downloads. Runs in a thread of the test process, on 127.0.0.1."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Notification:
    path: str
    headers: dict[str, str]
    fields: list[tuple[str, str]]
    body: bytes

    def field(self, name: str) -> str:
        for key, value in self.fields:
            if key == name:
                return value
        raise KeyError(f"{name} not in {self.fields}")


class WebServer:
    """POSTs are recorded (and answered with `reply`); GETs serve `files` (path -> bytes)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.reply = b""
        # POST path (without query) -> reply body, or bodies for successive requests (the
        # last one repeats)
        self.replies: dict[str, bytes | list[bytes]] = {}
        # POST path (without query) -> a function of the notification that makes the reply
        # (for replies that depend on the fields, e.g. only the CallChanged of InCall);
        # wins over `replies`
        self.handlers: dict[str, Callable[[Notification], bytes]] = {}
        self.received: list[Notification] = []
        self._cond = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                fields = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)
                note = Notification(self.path, dict(self.headers.items()), fields, body)
                with server._cond:
                    server.received.append(note)
                    server._cond.notify_all()
                path = self.path.split("?")[0]
                with server._cond:
                    handler = server.handlers.get(path)
                    reply = server.replies.get(path, server.reply)
                    if isinstance(reply, list):
                        reply = reply.pop(0) if len(reply) > 1 else reply[0]
                if handler is not None:
                    reply = handler(note)
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def do_GET(self) -> None:
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, name: str, timeout: float = 15.0) -> Notification:
        """The first notification whose NotificationName is `name`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for note in self.received:
                    if ("NotificationName", name) in note.fields:
                        return note
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {name} notification; got {self.received}")
                self._cond.wait(left)

    def named(self, name: str) -> list[Notification]:
        """Every notification received so far whose NotificationName is `name`."""
        with self._cond:
            return [n for n in self.received if ("NotificationName", name) in n.fields]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
