"""Real local receivers for notification tests: an HTTP webhook server and an SMTP server."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from aiosmtpd.controller import Controller

from maillage.stack.process import free_port


@dataclass
class Hook:
    """One POST the webhook receiver took."""

    notification_id: str
    body: bytes
    signature_ok: bool
    at: float
    doc: dict[str, Any] = field(default_factory=dict)


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that checks each POST's HMAC-SHA256 signature; it can be
    stopped (nothing listens: connections are refused) and started again on the same port."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.port = free_port()
        self.hooks: list[Hook] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                want = "sha256=" + hmac.new(receiver.secret, body, hashlib.sha256).hexdigest()
                got = self.headers.get("X-Maillage-Signature") or ""
                hook = Hook(self.headers.get("X-Maillage-Notification-Id") or "", body,
                            hmac.compare_digest(want, got), time.monotonic(), orjson.loads(body))
                with receiver._lock:
                    receiver.hooks.append(hook)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ids(self) -> set[str]:
        with self._lock:
            return {h.notification_id for h in self.hooks}

    def received(self) -> list[Hook]:
        with self._lock:
            return list(self.hooks)


class _Handler:
    def __init__(self, sink: SmtpReceiver) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = message_from_bytes(envelope.original_content or envelope.content)
        with self.sink._lock:
            self.sink.messages.append((list(envelope.rcpt_tos), msg, time.monotonic()))
        return "250 OK"


class SmtpReceiver:
    """A real local SMTP server (aiosmtpd) keeping every message."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[tuple[list[str], Message, float]] = []
        self._lock = threading.Lock()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def received(self) -> list[tuple[list[str], Message, float]]:
        with self._lock:
            return list(self.messages)
