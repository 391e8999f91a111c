"""Which receiver URLs are allowed: http(s) only, and never an internal address.

A webhook URL is typed by staff but fetched by the server, so it could aim the server at
its own network (server-side request forgery). Loopback, private, link-local, multicast,
reserved and unspecified addresses (IPv4 and IPv6, IPv4-mapped IPv6 included) are
refused, whether written as a literal or reached through a hostname. The check runs when
the endpoint is saved and again at every delivery, and the delivery connects to exactly
the address it checked: a name that resolves elsewhere later (DNS rebinding) gains
nothing. `WEBHOOKS_ALLOW_PRIVATE=true` lifts the address rule (tests, local setups).
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from urllib.parse import SplitResult, urlsplit

URL_MAX = 2000
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(ValueError):
    """The URL cannot be a webhook receiver; the message says why (shown to staff)."""


def parse_url(url: object) -> SplitResult:
    """The URL's parts if it is a well-formed http(s) URL with a host; else UrlRefused."""
    if not isinstance(url, str) or not url:
        raise UrlRefused("Give the receiver's URL (http:// or https://).")
    if len(url) > URL_MAX:
        raise UrlRefused(f"The URL is longer than {URL_MAX} characters.")
    if any(ch.isspace() or unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"}
           for ch in url):
        raise UrlRefused("The URL must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused("The URL is not valid.") from exc
    if parts.scheme.lower() not in {"http", "https"}:
        raise UrlRefused("Only http:// and https:// URLs are allowed.")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("The URL must not contain a user name or password: "
                         "receivers check the signature instead.")
    host = parts.hostname
    if not host:
        raise UrlRefused("The URL has no host.")
    if port == 0:
        raise UrlRefused("The URL's port is not valid.")
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise UrlRefused("The URL's host name is not valid.") from exc
    return parts


def refusal(ip: IpAddress) -> str | None:
    """Why the server must not connect to `ip`, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (
        (ip.is_loopback, "a loopback address"),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
        (not ip.is_global, "not a public address"),
    )
    for refused, why in checks:
        if refused:
            return why
    return None


def resolve(host: str, port: int) -> list[IpAddress]:
    """The addresses `host` stands for (a literal, or what DNS answers now)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host.encode("idna").decode("ascii"), port,
                                   type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UrlRefused(f"The host {host} cannot be resolved.") from exc
    found: list[IpAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise UrlRefused(f"The host {host} cannot be resolved.")
    return found


def default_port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)


def allowed_addresses(parts: SplitResult, allow_private: bool) -> list[IpAddress]:
    """Resolve the URL's host and refuse it if any address it has is not public (one
    internal answer among public ones is enough to refuse: which one a connection uses is
    not ours to choose)."""
    assert parts.hostname is not None
    addresses = resolve(parts.hostname, default_port(parts))
    if not allow_private:
        for address in addresses:
            why = refusal(address)
            if why is not None:
                raise UrlRefused(
                    f"The host {parts.hostname} is {why} ({address}): webhooks only go "
                    "to public addresses."
                )
    return addresses


def check_url(url: object, allow_private: bool) -> str:
    """The URL if it may be saved as a receiver; else UrlRefused with the reason."""
    parts = parse_url(url)
    allowed_addresses(parts, allow_private)
    return parts.geturl()
