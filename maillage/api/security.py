"""Every refusal of the API is logged with who and what: one structured line on `maillage.security`.

A refusal is a 401 (no token, an unknown, expired or revoked one), a 403 (a role outside what an
endpoint allows) or a 404 raised because a token named another tenant. The line is
`refused {json}` with `status`, `reason`, `method`, `path`, `client` and, when the token was
known, `token_id`, `role` and `tenant` (`*`: every tenant), e.g.

    refused {"status": 403, "reason": "role", "token_id": 12, "role": "opendata", "tenant": "vitre",
             "method": "GET", "path": "/v1/alerts", "client": "127.0.0.1", "message": "..."}

`api/deps.py` logs and raises `Refused` (an `HTTPException` with a machine-readable reason);
`install(app)` adds a middleware logging the 401 and 403 a route raised itself (reason `refused`).
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from maillage.registry.tokens import Principal

log = logging.getLogger("maillage.security")

LOGGED = "security_logged"
"""request.state flag: this request's refusal is already logged."""

_request: ContextVar[Request | None] = ContextVar("maillage_request", default=None)
"""The request being served, set with its principal (routes call `tenant_scope` without it)."""


class Refused(HTTPException):
    """A refusal with its reason (`missing_token`, `invalid_token`, `token_expired`,
    `token_revoked`, `role`, `other_tenant`)."""

    def __init__(self, status_code: int, detail: str, *, reason: str,
                 token_id: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code, detail, headers=headers)
        self.reason = reason
        self.token_id = token_id


def remember(request: Request, p: Principal) -> Principal:
    """Keep the caller on the request: a refusal after authentication names it."""
    request.state.principal = p
    _request.set(request)
    return p


def log_refusal(request: Request | None, *, status: int, reason: str, message: str = "",
                token_id: int | None = None, principal: Principal | None = None) -> None:
    """Write the refusal line, once per request."""
    request = request or _request.get()
    if request is not None:
        if getattr(request.state, LOGGED, False):
            return
        setattr(request.state, LOGGED, True)
        principal = principal or getattr(request.state, "principal", None)
    doc: dict[str, Any] = {"status": status, "reason": reason}
    if principal is not None:
        doc.update(token_id=principal.token_id, role=principal.role.value,
                   tenant=principal.tenant or "*")
    elif token_id is not None:
        doc["token_id"] = token_id
    if request is not None:
        doc.update(method=request.method, path=request.url.path,
                   client=request.client.host if request.client else None)
    doc["message"] = message
    log.warning("refused %s", json.dumps(doc))


class RefusalLog:
    """ASGI middleware: logs the 401 and 403 answers that no `Refused` logged already (a route's
    own HTTPException). Pure ASGI, so streamed answers (the alert stream) pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                log_refusal(Request(scope), status=message["status"], reason="refused")
            await send(message)

        await self.app(scope, receive, watch)


def install(app: FastAPI) -> None:
    """Also log the 401 and 403 answers a route raised as a plain HTTPException."""
    app.add_middleware(RefusalLog)
