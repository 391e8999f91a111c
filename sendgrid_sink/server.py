"""The sink's HTTP server: `POST /v3/mail/send`, fault injection, the `/_sink/` control
endpoints and the poster of signed Event Webhook batches.

Control endpoints for tests running in other processes:
`GET|DELETE /_sink/messages`, `GET /_sink/stats`, `POST /_sink/faults`,
`GET /_sink/public-key` and `POST /_sink/events/flush`.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import random
import secrets
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.client import HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from types import TracebackType
from typing import IO, Any

from .events import EVENT_SHARE_KINDS, Event, build_events
from .records import Record, build_records
from .signing import load_private_key, new_private_key, public_key_b64, signature_headers
from .validation import MAX_BODY_BYTES, error_body, validate_mail

WEBHOOK_BATCH = 1000
MAX_PENDING_EVENTS = 100_000
FAULT_KINDS = ("429", "500", "502", "503", "reset", "slow")
DEFAULT_FAULT_KINDS = ("429", "500", "503", "reset")

_INVALID_GRANT = "The provided authorization grant is invalid, expired, or revoked"
_STATUS_MESSAGES = {
    429: "too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
}


@dataclass(frozen=True)
class FaultConfig:
    rate: float = 0.0
    kinds: tuple[str, ...] = DEFAULT_FAULT_KINDS
    slow_seconds: float = 2.0


class _HTTPServer(ThreadingHTTPServer):
    """Knows its SinkServer and its open connections (closed on stop: keep-alive clients
    would otherwise hold handler threads in a blocking read)."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sink: SinkServer) -> None:
        self.sink = sink
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn(), a DNS lookup that can stall.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # client went away: nothing worth reporting
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SendGridSink/1.0"
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections are dropped after this
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silenced: one line per request would flood the output."""

    # -- plumbing --

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    def _send(self, status: int, payload: bytes = b"",
              headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _send_json(self, status: int, value: object) -> None:
        self._send(status, json.dumps(value).encode())

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering 411/413 (connection then closes)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send(411, error_body(("Content-Length is required.", None)))
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(400, error_body(("Invalid Content-Length.", None)))
            return None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(413, error_body(("The request body may not exceed 30 MB.", None)))
            return None
        return self.rfile.read(length) if length else b""

    def _reset(self) -> None:
        """Drops the connection with a TCP RST and no response at all."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        # makefile() holds a reference: the descriptor really closes with the last of them.
        self.rfile.close()
        self.connection.close()

    # -- routes --

    def do_GET(self) -> None:
        sink, path = self.server.sink, self._path()
        if path == "/_sink/messages":
            self._send_json(200, sink.messages())
        elif path == "/_sink/stats":
            self._send_json(200, sink.stats())
        elif path == "/_sink/public-key":
            self._send_json(200, {"public_key": sink.public_key_b64})
        else:
            self._send(404, error_body(("Not found", None)))

    def do_DELETE(self) -> None:
        if self._read_body() is None:
            return
        if self._path() == "/_sink/messages":
            self.server.sink.clear()
            self._send(204)
        else:
            self._send(404, error_body(("Not found", None)))

    def do_POST(self) -> None:
        path = self._path()
        if path == "/v3/mail/send":
            self.server.sink._handle_send(self)
            return
        raw = self._read_body()
        if raw is None:
            return
        if path == "/_sink/faults":
            try:
                spec = json.loads(raw or b"{}")
                self.server.sink.set_faults(
                    float(spec.get("rate", 0.0)),
                    spec.get("kinds", DEFAULT_FAULT_KINDS),
                    slow_seconds=float(spec.get("slow_seconds", 2.0)),
                    seed=spec.get("seed"),
                )
            except (ValueError, TypeError, AttributeError) as exc:
                self._send(400, error_body((f"Bad fault spec: {exc}", None)))
                return
            self._send_json(200, {"ok": True})
        elif path == "/_sink/events/flush":
            self._send_json(200, {"posted": self.server.sink.flush_events()})
        else:
            self._send(404, error_body(("Not found", None)))


class SinkServer:
    """The sink: an HTTP server in a daemon thread plus, with `webhook_url`, an event poster.

    `keep_content=False` records only message_id, to, custom_args and headers (cheap enough
    for benchmarks); `record=False` keeps counters only.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        record_path: str | os.PathLike[str] | None = None,
        keep_content: bool = True,
        record: bool = True,
        webhook_url: str | None = None,
        webhook_interval: float = 1.0,
        event_shares: Mapping[str, float] | None = None,
        private_key_pem: bytes | str | None = None,
    ) -> None:
        shares = dict(event_shares or {})
        for kind, share in shares.items():
            if kind not in EVENT_SHARE_KINDS or not 0.0 <= share <= 1.0:
                raise ValueError(f"bad event share {kind}={share}")
        if webhook_url and not webhook_url.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http(s) URL")
        self.host, self.port = host, port
        self.api_key = api_key
        self.record_path = Path(record_path) if record_path else None
        self.keep_content, self.record = keep_content, record
        self.webhook_url, self.webhook_interval = webhook_url, webhook_interval
        self.event_shares = shares
        self._key = (load_private_key(private_key_pem) if private_key_pem
                     else new_private_key())
        self.public_key_b64 = public_key_b64(self._key)

        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._stats = self._zero_stats()
        self._record_file: IO[str] | None = None
        self._faults = FaultConfig()
        self._fault_rng = random.Random()
        self._event_rng = random.Random()

        self._pending: deque[Event] = deque()
        self._events_lock = threading.Lock()
        self._post_lock = threading.Lock()  # one poster at a time keeps batches in order
        self._webhook_stats = {"posted": 0, "failed_posts": 0, "dropped": 0}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        self._httpd: _HTTPServer | None = None
        self._threads: list[threading.Thread] = []

    @staticmethod
    def _zero_stats() -> dict[str, int]:
        return {"requests": 0, "accepted_requests": 0, "personalizations": 0,
                "rejected": 0, "faults": 0}

    # -- lifecycle --

    def start(self) -> SinkServer:
        if self._httpd is not None:
            raise RuntimeError("sink already started")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_port
        if self.record_path:
            self._record_file = self.record_path.open("a", encoding="utf-8")
        serve = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                 name=f"sendgrid-sink:{self.port}", daemon=True)
        self._threads = [serve]
        if self.webhook_url:
            self._threads.append(threading.Thread(target=self._webhook_loop, daemon=True,
                                                  name=f"sendgrid-sink-webhook:{self.port}"))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        self._wake.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=15)
        with self._lock:
            if self._record_file:
                self._record_file.close()
                self._record_file = None

    def __enter__(self) -> SinkServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    # -- inspection and control --

    def messages(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def webhook_stats(self) -> dict[str, int]:
        """Events posted, failed post attempts, events dropped, events pending."""
        with self._events_lock:
            return {**self._webhook_stats, "pending": len(self._pending)}

    def clear(self) -> None:
        """Forgets records and resets counters (the record file is left alone)."""
        with self._lock:
            self._records.clear()
            self._stats = self._zero_stats()

    def set_faults(self, rate: float, kinds: Iterable[str] = DEFAULT_FAULT_KINDS,
                   slow_seconds: float = 2.0, seed: int | None = None) -> None:
        """Fault injection from now on: with probability `rate` per mail/send request one of
        `kinds` (429, 500, 502, 503, reset, slow) happens instead. Rate 0 disables it."""
        kinds = tuple(str(kind) for kind in ([kinds] if isinstance(kinds, str) else kinds))
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or (rate and not kinds):
            raise ValueError(f"fault kinds must be among {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._faults = FaultConfig(rate, kinds, slow_seconds)
            if seed is not None:
                self._fault_rng.seed(seed)

    def _draw_fault(self) -> tuple[str | None, float]:
        with self._lock:
            faults = self._faults
            if not faults.rate or self._fault_rng.random() >= faults.rate:
                return None, 0.0
            self._stats["faults"] += 1
            return self._fault_rng.choice(faults.kinds), faults.slow_seconds

    # -- mail/send --

    def _count(self, key: str) -> None:
        with self._lock:
            self._stats[key] += 1

    def _authorized(self, header: str | None) -> bool:
        scheme, _, key = (header or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return False
        return self.api_key is None or hmac.compare_digest(key.encode(), self.api_key.encode())

    def _handle_send(self, handler: _Handler) -> None:
        received_at = time.time()
        self._count("requests")
        raw = handler._read_body()
        if raw is None:
            self._count("rejected")
            return
        if not self._authorized(handler.headers.get("Authorization")):
            self._count("rejected")
            handler._send(401, error_body((_INVALID_GRANT, None)))
            return
        fault, slow_seconds = self._draw_fault()
        if fault == "reset":
            handler._reset()
            return
        if fault == "slow":
            time.sleep(slow_seconds)
        elif fault is not None:
            status = int(fault)
            headers = {}
            if status == 429:
                headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
                           "X-RateLimit-Reset": str(round(time.time() + 1))}
            handler._send(status, error_body((_STATUS_MESSAGES[status], None)), headers)
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        problems = (validate_mail(body, received_at) if isinstance(body, dict)
                    else [("Bad Request", None)])
        if problems:
            self._count("rejected")
            handler._send(400, error_body(*problems))
            return
        settings = body.get("mail_settings")
        sandbox = settings.get("sandbox_mode") if isinstance(settings, dict) else None
        if isinstance(sandbox, dict) and sandbox.get("enable") is True:
            handler._send(200)
            return
        message_id = secrets.token_urlsafe(16)
        self._accept(body, message_id, received_at)
        handler._send(202, headers={"X-Message-Id": message_id})

    def _accept(self, body: dict[str, Any], message_id: str, received_at: float) -> None:
        records = (build_records(body, message_id, received_at, keep_content=self.keep_content)
                   if self.record else [])
        lines = "".join(json.dumps(r) + "\n" for r in records) if self._record_file else ""
        with self._lock:
            self._stats["accepted_requests"] += 1
            self._stats["personalizations"] += len(body["personalizations"])
            self._records.extend(records)
            if lines and self._record_file:
                self._record_file.write(lines)
                self._record_file.flush()
        if self.webhook_url:
            events = build_events(body, message_id, self.event_shares, self._event_rng,
                                  received_at)
            self._enqueue_events(events)

    # -- Event Webhook --

    def _enqueue_events(self, events: list[Event]) -> None:
        with self._events_lock:
            self._pending.extend(events)
            overflow = len(self._pending) - MAX_PENDING_EVENTS
            for _ in range(max(0, overflow)):
                self._pending.popleft()  # the oldest go first
            self._webhook_stats["dropped"] += max(0, overflow)
            full = len(self._pending) >= WEBHOOK_BATCH
        if full:
            self._wake.set()

    def _webhook_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.webhook_interval)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                ok = self._post_pending()
            except Exception as exc:  # never let the poster die; report and go on
                print(f"sendgrid-sink: event webhook poster error: {exc!r}", file=sys.stderr)
                ok = False
            if not ok:  # back off for a whole interval before the retry
                self._stopping.wait(self.webhook_interval)

    def flush_events(self) -> int:
        """Posts every pending event now (synchronously); returns how many were posted."""
        if not self.webhook_url:
            return 0
        before = self.webhook_stats()["posted"]
        self._post_pending()
        return self.webhook_stats()["posted"] - before

    def _post_pending(self) -> bool:
        """Posts pending events in batches until none are left; False after a failed post
        (that batch goes back to the front of the queue)."""
        with self._post_lock:
            while True:
                with self._events_lock:
                    count = min(WEBHOOK_BATCH, len(self._pending))
                    batch = [self._pending.popleft() for _ in range(count)]
                if not batch:
                    return True
                if not self._post_batch(batch):
                    with self._events_lock:
                        self._webhook_stats["failed_posts"] += 1
                        room = MAX_PENDING_EVENTS - len(self._pending)
                        kept = batch[:max(0, room)]
                        self._webhook_stats["dropped"] += len(batch) - len(kept)
                        self._pending.extendleft(reversed(kept))
                    return False
                with self._events_lock:
                    self._webhook_stats["posted"] += len(batch)

    def _post_batch(self, batch: list[Event]) -> bool:
        assert self.webhook_url
        payload = json.dumps(batch, separators=(",", ":")).encode()
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.webhook_url,
            data=payload,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "SendGrid Event API",
                **signature_headers(self._key, payload),
            },
        )
        try:
            with self._opener.open(request, timeout=10) as response:
                response.read()
                return 200 <= response.status < 300
        except urllib.error.HTTPError as exc:
            exc.close()
            return False
        except (OSError, HTTPException, ValueError):
            return False

