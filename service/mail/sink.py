"""A SendGrid-v3-compatible HTTP sink for development, tests and benchmarks.

The real `sendgrid` library works against it unchanged:
`SendGridAPIClient(key, host=sink.url)`. It accepts `POST /v3/mail/send`, validates the
body the way SendGrid does (with the same `personalizations.{i}.to.{j}.email` error fields
the sending code relies on), records what would have been delivered, can inject faults
(429, 5xx, connection resets, slow answers) and posts signed Event Webhook batches back to
the application, like SendGrid's Event Webhook.

Control endpoints for tests running in other processes live under `/_sink/`:
`GET|DELETE /_sink/messages`, `GET /_sink/stats`, `POST /_sink/faults`,
`GET /_sink/public-key` and `POST /_sink/events/flush`.

Only the standard library plus `cryptography` (event signing) and `click` (CLI) are used.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import os
import random
import re
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
from typing import IO, Any, cast

import click
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

MAX_BODY_BYTES = 30 * 1024 * 1024
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CATEGORIES = 10
MAX_ARGS_BYTES = 10_000
MAX_SEND_AT_AHEAD = 72 * 3600
WEBHOOK_BATCH = 1000
MAX_PENDING_EVENTS = 100_000
FAULT_KINDS = ("429", "500", "502", "503", "reset", "slow")
DEFAULT_FAULT_KINDS = ("429", "500", "503", "reset")
EVENT_SHARE_KINDS = ("open", "click", "bounce", "spamreport")

# One "@", a non-empty local part, a dotted domain, no whitespace. Length is checked apart.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_LINK = re.compile(r"""https?://[^\s"'<>]+""")
_INVALID_GRANT = "The provided authorization grant is invalid, expired, or revoked"
_STATUS_MESSAGES = {
    429: "too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
}

Record = dict[str, Any]
Event = dict[str, Any]


def error_body(*errors: tuple[str, str | None]) -> bytes:
    """SendGrid's error envelope: `{"errors": [{"message", "field", "help"}]}`."""
    items = [{"message": message, "field": field, "help": None} for message, field in errors]
    return json.dumps({"errors": items}).encode()


def is_valid_email(value: object) -> bool:
    """The sink's (deliberately simple) idea of a syntactically valid address."""
    return isinstance(value, str) and len(value) <= 254 and bool(_EMAIL.fullmatch(value))


# --- validation ----------------------------------------------------------------------------


class _Problems:
    """Collects every problem of one request, SendGrid lists them all at once."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str | None]] = []

    def add(self, message: str, field: str | None) -> None:
        self.items.append((message, field))

    def string_map(self, value: object, prefix: str, name: str) -> dict[str, str]:
        """Checks that `value` is an object of strings; returns it ({} when unusable).

        The field is `prefix + name` ("headers", "personalizations.3.headers"): built only
        for an error, which keeps 1000 personalizations cheap to validate.
        """
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(f"The {name} parameter must be an object.", prefix + name)
            return {}
        if not all(isinstance(v, str) for v in value.values()):
            self.add(f"All {name} values must be strings.", prefix + name)
            return {}
        return value

    def limited_map(self, value: object, prefix: str, name: str, *, serialized: bool) -> None:
        """A string map whose size (of its JSON form when `serialized`) is under 10,000 bytes."""
        mapping = self.string_map(value, prefix, name)
        if mapping and _exceeds(mapping, MAX_ARGS_BYTES, serialized=serialized):
            self.add(f"The {name} may not exceed {MAX_ARGS_BYTES} bytes.", prefix + name)

    def send_at(self, value: object, prefix: str, now: float) -> None:
        if value is None:
            return
        if not isinstance(value, int) or isinstance(value, bool):
            self.add("The send_at parameter must be a unix timestamp (integer).",
                     prefix + "send_at")
        elif value > now + MAX_SEND_AT_AHEAD:
            self.add("The send_at parameter may not be more than 72 hours in the future.",
                     prefix + "send_at")


def _exceeds(mapping: dict[str, str], limit: int, *, serialized: bool) -> bool:
    """Whether the UTF-8 size of the keys and values (or of the JSON) reaches `limit`.

    A character takes at most 6 bytes even as a JSON escape, so the exact measure is only
    taken for maps that could be near the limit.
    """
    chars = sum(map(len, mapping)) + sum(map(len, mapping.values()))
    if chars * 6 + len(mapping) * 8 + 2 < limit:
        return False
    if serialized:
        size = len(json.dumps(mapping, ensure_ascii=False).encode())
    else:
        size = sum(len(k.encode()) + len(v.encode()) for k, v in mapping.items())
    return size >= limit


def validate_mail(body: object, now: float | None = None) -> list[tuple[str, str | None]]:
    """Every problem SendGrid would report for this `/v3/mail/send` body, as (message, field).

    Per-recipient problems name `personalizations.{i}.{to|cc|bcc}.{j}.email`; the sending
    code uses that index to drop one recipient and resend the others.
    """
    now = time.time() if now is None else now
    problems = _Problems()
    if not isinstance(body, dict):
        problems.add("The request body must be a JSON object.", None)
        return problems.items

    sender = body.get("from")
    if not isinstance(sender, dict) or "email" not in sender:
        problems.add(
            "The from object must be provided for every email send. It is an object that "
            "requires the email parameter, but may also contain a name parameter.",
            "from.email",
        )
    elif not is_valid_email(sender["email"]):
        problems.add("The from email does not contain a valid address.", "from.email")
    reply_to = body.get("reply_to")
    if reply_to is not None and not (isinstance(reply_to, dict)
                                     and is_valid_email(reply_to.get("email"))):
        problems.add("The reply_to email does not contain a valid address.", "reply_to.email")

    has_template = isinstance(body.get("template_id"), str)
    _validate_content(body.get("content"), problems, required=not has_template)

    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        problems.add(
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
        personalizations = []
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        problems.add(
            f"You may not have more than {MAX_PERSONALIZATIONS} personalizations per request.",
            "personalizations",
        )

    subject = body.get("subject")
    if subject is not None and not isinstance(subject, str):
        problems.add("The subject must be a string.", "subject")
    subject_everywhere = bool(personalizations) and all(
        isinstance(p, dict) and isinstance(p.get("subject"), str) and p["subject"]
        for p in personalizations
    )
    if not subject and not subject_everywhere and not has_template:
        problems.add(
            "The subject is required. You can get around this requirement if you use a "
            "template with a subject defined or if every personalization has a subject defined.",
            "subject",
        )

    seen: set[str] = set()
    recipients = 0
    for i, personalization in enumerate(personalizations):
        recipients += _validate_personalization(i, personalization, problems, seen, now)
    if recipients > MAX_RECIPIENTS:
        problems.add(
            f"The total number of recipients (to, cc and bcc over all personalizations) "
            f"must not exceed {MAX_RECIPIENTS}.",
            "personalizations",
        )

    problems.string_map(body.get("headers"), "", "headers")
    problems.limited_map(body.get("custom_args"), "", "custom_args", serialized=True)
    problems.send_at(body.get("send_at"), "", now)
    categories = body.get("categories")
    if categories is not None and not (
        isinstance(categories, list)
        and len(categories) <= MAX_CATEGORIES
        and all(isinstance(c, str) and c for c in categories)
    ):
        problems.add(
            f"The categories parameter must be a list of at most {MAX_CATEGORIES} strings.",
            "categories",
        )
    return problems.items


def _validate_content(content: object, problems: _Problems, *, required: bool) -> None:
    if content is None and not required:
        return
    if not isinstance(content, list) or not content:
        problems.add(
            "Unless a valid template_id is provided, the content parameter is required. "
            "There must be at least one defined content block.",
            "content",
        )
        return
    types: list[str] = []
    for k, item in enumerate(content):
        if not isinstance(item, dict):
            problems.add("Each content block must be an object with type and value.",
                         f"content.{k}")
            continue
        kind, value = item.get("type"), item.get("value")
        if not isinstance(kind, str) or not kind:
            problems.add("The content type must be a non-empty string.", f"content.{k}.type")
        else:
            types.append(kind)
        if not isinstance(value, str) or not value:
            problems.add("The content value must be a string at least one character in length.",
                         f"content.{k}.value")
    if types.count("text/plain") > 1 or types.count("text/html") > 1:
        problems.add("If present, text/plain and text/html may only be provided once.",
                     "content")
    elif ("text/plain" in types and "text/html" in types
          and types.index("text/plain") > types.index("text/html")):
        problems.add("If present, text/plain must be first, followed by text/html.", "content")


def _validate_personalization(i: int, p: object, problems: _Problems, seen: set[str],
                              now: float) -> int:
    """Validates personalization `i`; returns its number of recipients."""
    prefix = f"personalizations.{i}."
    if not isinstance(p, dict):
        problems.add("Each personalization must be an object.", prefix[:-1])
        return 0
    to = p.get("to")
    if not isinstance(to, list) or not to:
        problems.add(
            "The to array is required for all personalization objects, and must have at "
            "least one email object with a valid email address.",
            prefix + "to",
        )
    recipients = 0
    for kind in ("to", "cc", "bcc"):
        group = p.get(kind)
        if group is None or (kind == "to" and not isinstance(group, list)):
            continue
        if not isinstance(group, list):
            problems.add(f"The {kind} parameter must be an array.", prefix + kind)
            continue
        recipients += len(group)
        for j, recipient in enumerate(group):
            email = recipient.get("email") if isinstance(recipient, dict) else None
            if not is_valid_email(email):
                problems.add("Does not contain a valid address.", f"{prefix}{kind}.{j}.email")
                continue
            key = cast(str, email).lower()
            if key in seen:
                problems.add(
                    f"Duplicate email addresses are not allowed in one request: "
                    f"{email} appears more than once.",
                    f"{prefix}{kind}.{j}.email",
                )
            seen.add(key)
            name = recipient.get("name")
            if name is not None and (not isinstance(name, str) or ";" in name or "," in name):
                problems.add(
                    "The recipient name must be a string and may not contain ; or , characters.",
                    f"{prefix}{kind}.{j}.name",
                )
    subject = p.get("subject")
    if subject is not None and not isinstance(subject, str):
        problems.add("The subject must be a string.", prefix + "subject")
    problems.limited_map(p.get("substitutions"), prefix, "substitutions", serialized=False)
    problems.string_map(p.get("headers"), prefix, "headers")
    problems.limited_map(p.get("custom_args"), prefix, "custom_args", serialized=True)
    problems.send_at(p.get("send_at"), prefix, now)
    return recipients


# --- records and events --------------------------------------------------------------------


def substitute(text: str | None, substitutions: Mapping[str, str]) -> str | None:
    """SendGrid's substitutions: a plain string replace of every key by its value."""
    if not text:
        return text
    for key, value in substitutions.items():
        text = text.replace(key, value)
    return text


def _content(body: Mapping[str, Any], kind: str) -> str | None:
    for item in body.get("content") or ():
        if item.get("type") == kind:
            return cast(str, item.get("value"))
    return None


def _recipients(p: Mapping[str, Any], kinds: Iterable[str] = ("to",)) -> list[dict[str, Any]]:
    return [{"email": r["email"], "name": r.get("name")} for kind in kinds
            for r in p.get(kind) or ()]


def build_records(body: Mapping[str, Any], message_id: str, received_at: float, *,
                  keep_content: bool = True) -> list[Record]:
    """One record per personalization of an accepted (already validated) body."""
    headers = body.get("headers") or {}
    custom_args = body.get("custom_args") or {}
    records: list[Record] = []
    if not keep_content:
        for p in body["personalizations"]:
            records.append({
                "message_id": message_id,
                "to": _recipients(p),
                "custom_args": {**custom_args, **(p.get("custom_args") or {})},
                "headers": {**headers, **(p.get("headers") or {})},
            })
        return records
    html, text = _content(body, "text/html"), _content(body, "text/plain")
    for p in body["personalizations"]:
        subs = p.get("substitutions") or {}
        records.append({
            "message_id": message_id,
            "received_at": received_at,
            "from": body.get("from"),
            "reply_to": body.get("reply_to"),
            "to": _recipients(p),
            "subject": substitute(p.get("subject") or body.get("subject"), subs),
            "html": substitute(html, subs),
            "text": substitute(text, subs),
            "headers": {**headers, **(p.get("headers") or {})},
            "custom_args": {**custom_args, **(p.get("custom_args") or {})},
            "categories": body.get("categories") or [],
            "send_at": p.get("send_at", body.get("send_at")),
        })
    return records


def build_events(body: Mapping[str, Any], message_id: str, shares: Mapping[str, float],
                 rng: random.Random, now: float | None = None) -> list[Event]:
    """Event Webhook events for an accepted body: processed + delivered per recipient, and
    open/click/bounce/spamreport for the configured share of recipients."""
    timestamp = int(time.time() if now is None else now)
    custom_args = body.get("custom_args") or {}
    categories = body.get("categories")
    html = _content(body, "text/html") if shares.get("click") else None
    bounce, opened = shares.get("bounce", 0.0), shares.get("open", 0.0)
    clicked, spam = shares.get("click", 0.0), shares.get("spamreport", 0.0)
    events: list[Event] = []
    for i, p in enumerate(body["personalizations"]):
        args = {**custom_args, **(p.get("custom_args") or {})}
        sg_message_id = f"{message_id}.filter0001.{i}.0"
        for recipient in _recipients(p, ("to", "cc", "bcc")):
            base: Event = {**args, "email": recipient["email"], "timestamp": timestamp,
                           "sg_message_id": sg_message_id}
            if categories:
                base["category"] = categories
            events.append(_event(base, "processed"))
            if bounce and rng.random() < bounce:
                events.append(_event(base, "bounce", type="bounce", status="5.1.1",
                                     reason="550 5.1.1 mailbox does not exist"))
                continue
            events.append(_event(base, "delivered", response="250 OK"))
            if opened and rng.random() < opened:
                events.append(_event(base, "open"))
            if clicked and rng.random() < clicked:
                match = _LINK.search(substitute(html, p.get("substitutions") or {}) or "")
                url = match.group(0) if match else "https://example.org/"
                events.append(_event(base, "click", url=url))
            if spam and rng.random() < spam:
                events.append(_event(base, "spamreport"))
    return events


def _event(base: Event, event: str, **extra: Any) -> Event:
    return {**base, "event": event, "sg_event_id": secrets.token_urlsafe(16), **extra}


# --- keys and signing ----------------------------------------------------------------------


def load_private_key(pem: bytes | str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem,
                                             password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("the Event Webhook key must be an ECDSA P-256 private key")
    return key


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_or_create_key_file(path: str | os.PathLike[str]) -> bytes:
    """The PEM in `path`, created (mode 0600) if missing so the public key survives restarts."""
    file = Path(path)
    if file.exists():
        return file.read_bytes()
    pem = private_key_pem(ec.generate_private_key(ec.SECP256R1()))
    file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return pem


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """Base64 DER SubjectPublicKeyInfo, the form of SendGrid's verification key."""
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def sign_payload(key: ec.EllipticCurvePrivateKey, timestamp: str, payload: bytes) -> str:
    """The `X-Twilio-Email-Event-Webhook-Signature` value: base64 DER ECDSA-SHA256 over
    timestamp + raw body."""
    signature = key.sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


# --- HTTP server ---------------------------------------------------------------------------


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


# --- the sink ------------------------------------------------------------------------------


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
                     else ec.generate_private_key(ec.SECP256R1()))
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
        timestamp = str(int(time.time()))
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.webhook_url,
            data=payload,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "SendGrid Event API",
                "X-Twilio-Email-Event-Webhook-Signature": sign_payload(self._key, timestamp,
                                                                       payload),
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
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


# --- CLI -----------------------------------------------------------------------------------


@click.command("sendgrid-sink")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True, type=int)
@click.option("--api-key", default=None, help="Only accept this key (default: any).")
@click.option("--record", "record_file", type=click.Path(dir_okay=False), default=None,
              help="Append accepted messages to FILE as JSON lines.")
@click.option("--no-content", is_flag=True, help="Record only ids, recipients and args.")
@click.option("--count-only", is_flag=True,
              help="Keep no record at all, only the counters of /_sink/stats (benchmarks).")
@click.option("--fault-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--faults", default=",".join(DEFAULT_FAULT_KINDS), show_default=True,
              help=f"Comma list among {','.join(FAULT_KINDS)}.")
@click.option("--slow-seconds", default=2.0, show_default=True, type=float)
@click.option("--webhook-url", default=None, help="Post signed Event Webhook batches here.")
@click.option("--webhook-interval", default=1.0, show_default=True, type=float)
@click.option("--open-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--click-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--bounce-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--spam-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--key-file", type=click.Path(dir_okay=False), default=None,
              help="ECDSA P-256 PEM for webhook signing; created if missing.")
def sink_command(host: str, port: int, api_key: str | None, record_file: str | None,
                 no_content: bool, count_only: bool, fault_rate: float, faults: str,
                 slow_seconds: float,
                 webhook_url: str | None, webhook_interval: float, open_rate: float,
                 click_rate: float, bounce_rate: float, spam_rate: float,
                 key_file: str | None) -> None:
    """Run a SendGrid-v3-compatible sink (mail/send, faults, signed Event Webhook)."""
    kinds = [kind.strip() for kind in faults.split(",") if kind.strip()]
    if count_only and record_file:
        raise click.BadParameter("--count-only keeps no record to write", param_hint="--record")
    sink = SinkServer(
        host, port, api_key=api_key, record_path=record_file, keep_content=not no_content,
        record=not count_only,
        webhook_url=webhook_url, webhook_interval=webhook_interval,
        event_shares={"open": open_rate, "click": click_rate, "bounce": bounce_rate,
                      "spamreport": spam_rate},
        private_key_pem=load_or_create_key_file(key_file) if key_file else None,
    )
    try:
        sink.set_faults(fault_rate, kinds, slow_seconds=slow_seconds)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from exc
    sink.start()
    click.echo(f"SendGrid sink listening on {sink.url} (SendGridAPIClient host={sink.url})")
    click.echo(f"SENDGRID_WEBHOOK_PUBLIC_KEY={sink.public_key_b64}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        sink.stop()


if __name__ == "__main__":
    sink_command()
