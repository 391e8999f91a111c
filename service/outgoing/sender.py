"""One signed POST to a receiver, at the address that was checked, bounded in time and size.

`http.client` is used directly: it never follows a redirect (a 3xx is a failed attempt,
so a receiver cannot bounce the server to an internal address) and it lets the
connection go to the checked IP while TLS still verifies the URL's host name.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import SplitResult

from .addresses import IpAddress, UrlRefused, allowed_addresses, default_port, parse_url

SIGNATURE_HEADER = "Actionlist-Signature"
# At most this much of a receiver's answer is read (it is only logged).
MAX_RESPONSE_BYTES = 64 * 1024
ERROR_MAX = 500


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (docs/webhooks-out.md)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300 and not self.error


class PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to `address`; the Host header stays the URL's host."""

    def __init__(self, host: str, port: int, address: IpAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self.address), self.port), self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to `address`; SNI and certificate checks use the URL's host name."""

    def __init__(self, host: str, port: int, address: IpAddress, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((str(self.address), self.port), self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


def _target(parts: SplitResult) -> str:
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float,
         allow_private: bool) -> Outcome:
    """POST `body` to `url`; never raises (every failure is an Outcome with an error)."""
    started = time.monotonic()

    def done(status: int | None, error: str = "") -> Outcome:
        return Outcome(status, error[:ERROR_MAX], int((time.monotonic() - started) * 1000))

    try:
        parts = parse_url(url)
        address = allowed_addresses(parts, allow_private)[0]
    except UrlRefused as exc:
        return done(None, f"refused: {exc}")
    assert parts.hostname is not None
    port = default_port(parts)
    connection: http.client.HTTPConnection
    if parts.scheme.lower() == "https":
        connection = PinnedHTTPSConnection(parts.hostname, port, address, timeout)
    else:
        connection = PinnedHTTPConnection(parts.hostname, port, address, timeout)
    try:
        connection.request("POST", _target(parts), body=body, headers=headers)
        response = connection.getresponse()
        response.read(MAX_RESPONSE_BYTES)
        status = response.status
    except (OSError, http.client.HTTPException, ValueError) as exc:
        kind = "timeout" if isinstance(exc, TimeoutError | socket.timeout) else "error"
        return done(None, f"{kind}: {type(exc).__name__}: {exc}")
    finally:
        connection.close()
    if 300 <= status < 400:
        location = response.getheader("Location", "")[:200]
        return done(status, f"redirect not followed (Location: {location})")
    if not 200 <= status < 300:
        return done(status, f"HTTP {status}")
    return done(status)
