"""Webhook URLs that may not reach the service's own networks (SSRF).

Minimal: a URL's shape, and its host's addresses checked against private, loopback,
link-local (cloud metadata) and other non-public ranges.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LEN = 2048


def check_url(url: str) -> str:
    """``url`` when it is an absolute http(s) URL with a host and no credentials; ValueError otherwise."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL_LEN:
        raise ValueError(f"expected a URL of 1 to {MAX_URL_LEN} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("the scheme must be http or https")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL are not allowed")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise ValueError("the URL holds whitespace or control characters")
    return url


def _blocked(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def resolve_allowed(host: str, port: int, allow_private: bool) -> list[str]:
    """The addresses ``host`` resolves to; ValueError when it does not resolve or (unless
    ``allow_private``) any address is private, loopback, link-local (metadata) or reserved."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"the host {host!r} does not resolve: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private:
        blocked = [a for a in addresses if _blocked(a)]
        if blocked:
            raise ValueError(f"the host {host!r} resolves to a private or reserved address ({blocked[0]})")
    return addresses
