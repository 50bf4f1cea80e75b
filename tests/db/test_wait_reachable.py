"""A processor starting during a database outage waits for it; a misconfiguration fails at once."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from maillage.db.health import wait_until_reachable
from maillage.stack.process import free_port


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    return urlunsplit(parts._replace(netloc=f"{netloc}:{port}"))


def _forward(listener: socket.socket, target: tuple[str, int], stop: threading.Event) -> None:
    """Accept on `listener` and pipe each connection to `target` (the database "comes back")."""
    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            b.close()

    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            client, _ = listener.accept()
        except TimeoutError:
            continue
        server = socket.create_connection(target)
        for a, b in ((client, server), (server, client)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()


def test_waits_while_unreachable_and_returns_once_the_database_answers(db_url: str) -> None:
    port = free_port()
    url = _with_port(db_url, port)
    lines: list[str] = []
    waiter = threading.Thread(target=wait_until_reachable, args=(url,),
                              kwargs={"poll_s": 0.1, "log": lines.append}, daemon=True)
    waiter.start()
    time.sleep(1.5)
    assert waiter.is_alive(), "it gave up while nothing listened"
    assert len(lines) == 1 and lines[0].startswith("waiting for the database"), lines

    target = urlsplit(db_url)
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", port)) as listener:
        threading.Thread(target=_forward, args=(listener, (target.hostname, target.port), stop),
                         daemon=True).start()
        waiter.join(timeout=30)
        stop.set()
    assert not waiter.is_alive(), "it did not notice the database was back"
    assert lines[-1] == "the database answers again"


def test_a_wrong_password_is_an_error_at_once(db_url: str) -> None:
    parts = urlsplit(db_url)
    user = parts.username or "postgres"
    host = parts.netloc.rsplit("@", 1)[-1]
    bad = urlunsplit(parts._replace(netloc=f"{user}:not-the-password@{host}"))
    with pytest.raises(psycopg.OperationalError):
        wait_until_reachable(bad, poll_s=0.1)
