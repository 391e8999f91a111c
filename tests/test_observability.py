"""Log lines never carry the tokens of signed links.

A token in a URL path is a credential (a preferences link exports and erases a person's
data), and log files travel further than the database: to log shippers, support tickets,
backups. Gunicorn is started here exactly as the Procfile starts it, and its access log is
read back.
"""

from __future__ import annotations

import io
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import requests
from flask import Flask

from service import PROJECT_ROOT, config
from service.observability import RedactTokens
from service.tokens import Purpose, make_token
from tests import factories

KEY = secrets.token_urlsafe(48)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def procfile_web() -> str:
    lines = (PROJECT_ROOT / "Procfile").read_text().splitlines()
    return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("web:"))


def wait_until_up(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"gunicorn exited with {proc.returncode}"
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not answer")


def test_gunicorn_access_log_from_the_procfile_redacts_tokens(app: Flask,
                                                              tmp_path: Path) -> None:
    settings = config.settings()
    person = factories.subscriber("ana@example.org", lists={"newsletter": "confirmed"})
    signing = replace(settings, secret_key=KEY, secret_key_fallbacks=())
    tokens = {
        purpose: make_token(purpose, {"s": person.id, "l": []}, signing) for purpose in Purpose
    }
    bogus = "not-a-token-" + secrets.token_hex(8)
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PORT": str(port), "WEB_CONCURRENCY": "1", "PYTHONPATH": str(PROJECT_ROOT),
        "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
        "QUEUE_PREFIX": settings.queue_prefix or "", "SECRET_KEY": KEY,
        "PUBLIC_URL": "http://localhost", "SENDGRID_API_KEY": "", "SENDGRID_API_HOST":
        settings.sendgrid_api_host, "OUTBOX_DIR": str(tmp_path / "outbox"),
        "ORG_POSTAL_ADDRESS": "1 Main St, Springfield, IL 62701",
    }
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(["bash", "-c", f"exec {procfile_web()}"], env=env,
                                cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            wait_until_up(port, proc)
            base = f"http://127.0.0.1:{port}"
            preferences = f"/preferences/{tokens[Purpose.preferences]}"
            answers = [
                requests.get(f"{base}/confirm/{tokens[Purpose.confirm]}", timeout=10),
                requests.get(f"{base}/unsubscribe/{tokens[Purpose.unsubscribe]}", timeout=10),
                requests.get(f"{base}{preferences}?lang=es", timeout=10,
                             headers={"Referer": f"http://localhost{preferences}"}),
                requests.post(f"{base}{preferences}", data={"lists": "newsletter"},
                              allow_redirects=False, timeout=10),
                requests.get(f"{base}/export/{tokens[Purpose.export]}", timeout=10),
                requests.get(f"{base}/unsubscribe/{bogus}/x", timeout=10),
            ]
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    assert [a.status_code for a in answers] == [200, 200, 200, 303, 200, 404]
    text = log_path.read_text(errors="replace")
    for secret in (*tokens.values(), bogus):
        assert secret not in text
    for line in ("GET /confirm/[token] HTTP/1.1", "GET /unsubscribe/[token] HTTP/1.1",
                 "GET /preferences/[token]?lang=es HTTP/1.1",
                 '"http://localhost/preferences/[token]"', "POST /preferences/[token] HTTP",
                 "GET /export/[token] HTTP/1.1", "GET /unsubscribe/[token]/x HTTP/1.1"):
        assert line in text, text
    assert re.search(r'"GET /healthz HTTP/1.1" 200', text)  # other paths stay as they are


def test_the_service_log_handler_redacts_tokens(app: Flask) -> None:
    """The app's own log lines (errors name the request path) go through the same filter."""
    handler = next(h for h in logging.getLogger().handlers
                   if any(isinstance(f, RedactTokens) for f in h.filters))
    out = io.StringIO()
    previous = handler.setStream(out)  # type: ignore[attr-defined]
    try:
        token = make_token(Purpose.preferences, {"s": 1})
        logging.getLogger("service.test").error("Exception on /preferences/%s [POST]", token)
        logging.getLogger("werkzeug").info('"GET /confirm/%s?x=1 HTTP/1.1" 200', token)
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]
    assert token not in out.getvalue()
    assert "Exception on /preferences/[token] [POST]" in out.getvalue()
    assert '"GET /confirm/[token]?x=1 HTTP/1.1" 200' in out.getvalue()
