"""Webhook destination guard: a subscriber's URL must not make tracehouse call into its own network.

``check_url`` validates a URL when a subscription is written; ``resolve_allowed`` and the connector
parts check the addresses a host name resolves to. The check is repeated when each connection opens
(``GuardedResolver`` for names, ``guarded_socket_factory`` for every address, IP literals included,
which aiohttp never passes to a resolver), so a name that resolved to a public address at creation
and to a private one later (DNS rebinding) is still refused. Cloud metadata addresses are refused
even when private networks are allowed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Callable
from typing import Any

import yarl
from aiohttp import TCPConnector
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 2048
#: Instance metadata services (AWS, GCP, Azure, Oracle, AWS over IPv6): never a destination.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "168.63.129.16", "192.0.0.192", "fd00:ec2::254"))
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
#: IETF protocol assignments (192.0.0.0/24): Python 3.11 counts most of it as global.
_IETF_PROTOCOL = ipaddress.ip_network("192.0.0.0/24")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?")


class DestinationRefused(OSError, ValueError):
    """A destination in a forbidden address range. An ``OSError`` so that aiohttp reports it as a
    connection error (``ClientConnectorError``) whose cause chain holds it (see ``refusal``)."""


def forbidden_reason(ip: str | IPAddress, *, allow_private: bool = False) -> str | None:
    """Why ``ip`` may not be called (``"loopback"``, ``"private"``…), or None if it may. With
    ``allow_private`` only cloud metadata addresses are refused. ValueError if ``ip`` is no address."""
    address = ip if isinstance(ip, IPAddress) else ipaddress.ip_address(ip.split("%", 1)[0])
    embedded = _embedded_ipv4(address)
    if address in METADATA_ADDRESSES or embedded in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if allow_private:
        return None
    if embedded is not None:
        inner = forbidden_reason(embedded)
        return None if inner is None else f"an IPv6 form of an address that is {inner}"
    for reason, hit in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                        ("multicast", address.is_multicast), ("unspecified", address.is_unspecified),
                        ("carrier-grade NAT (100.64.0.0/10)", address in _CGNAT),
                        ("reserved", address.is_reserved or address in _IETF_PROTOCOL),
                        ("private", address.is_private), ("not globally routable", not address.is_global)):
        if hit:
            return reason
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (IPv4-mapped, 6to4, NAT64 64:ff9b::/96), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped or address.sixtofour:
        return address.ipv4_mapped or address.sixtofour
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None


def is_forbidden(ip: str | IPAddress) -> bool:
    """True if ``ip`` is private, loopback, link-local, multicast, unspecified, reserved, carrier-grade
    NAT, IPv6 ULA or link-local, an IPv6 form (mapped, 6to4, NAT64) of one of those, or cloud metadata."""
    return forbidden_reason(ip) is not None


def check_url(url: str, *, allow_private: bool = True) -> str:
    """``url`` if it may be a webhook destination: http or https, a host name or canonical IP address,
    no user or password; with ``allow_private=False`` an IP host must not be forbidden either (names are
    checked when resolved). ValueError saying why otherwise."""
    if not isinstance(url, str) or not url:
        raise ValueError("expected an http or https URL")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError("contains whitespace or control characters")
    try:
        parsed = yarl.URL(url)
        port = parsed.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError("only http and https URLs are allowed")
    if not parsed.raw_host:
        raise ValueError("the URL has no host")
    if "@" in urllib.parse.urlsplit(url).netloc or "@" in (parsed.raw_authority or ""):
        raise ValueError("the URL may not carry a user name or password")
    if port == 0:
        raise ValueError("port 0 is not a destination")
    host = parsed.raw_host
    address = _ip_literal(host)
    if address is None:
        labels = host.rstrip(".").split(".") if host != "." else [""]
        if not all(_LABEL.fullmatch(label) for label in labels) or len(host) > 253:
            raise ValueError(f"{host!r} is not a valid host name")
        if labels[-1].isdigit() or labels[-1].startswith("0x"):
            raise ValueError(f"{host!r} is not a canonical IP address")
    elif (reason := forbidden_reason(address, allow_private=allow_private)) is not None:
        raise ValueError(f"{address} is {reason}")
    return url


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve_allowed(host: str, port: int, allow_private: bool) -> list[str]:
    """The addresses ``host`` resolves to (``loop.getaddrinfo``), in resolver order without repeats;
    DestinationRefused if any is forbidden (unless ``allow_private``; metadata always).
    ``socket.gaierror`` when the name does not resolve."""
    address = _ip_literal(host)
    if address is not None:
        found = [str(address)]
    else:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for ip in found:
        _refuse(host, ip, allow_private)
    return found


def _refuse(host: str, ip: str, allow_private: bool) -> None:
    reason = forbidden_reason(ip, allow_private=allow_private)
    if reason is not None:
        where = ip if host == ip else f"{host} ({ip})"
        raise DestinationRefused(f"destination {where} is {reason}")


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that refuses a name when any of its addresses is forbidden, at each connect
    (``aiohttp.TCPConnector(resolver=GuardedResolver(allow_private))``; ``guarded_connector`` also
    checks IP literals). Resolves with ``inner`` (default aiohttp's ThreadedResolver: getaddrinfo)."""

    def __init__(self, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self.allow_private = allow_private
        self._inner = inner

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        for result in results:
            _refuse(host, result["host"], self.allow_private)
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def guarded_socket_factory(allow_private: bool) -> Callable[[Any], socket.socket]:
    """A ``TCPConnector(socket_factory=...)`` that refuses to open a socket to a forbidden address:
    the last check, on the very address connected to, IP-literal URLs included."""

    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _canonname, sockaddr = addr_info
        _refuse(str(sockaddr[0]), str(sockaddr[0]), allow_private)
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


def guarded_connector(allow_private: bool, **kwargs: Any) -> TCPConnector:
    """A TCPConnector (``kwargs`` passed on) with ``GuardedResolver`` and ``guarded_socket_factory``.
    A refused destination fails the request with ``aiohttp.ClientConnectorError``; ``refusal`` finds why."""
    return TCPConnector(resolver=GuardedResolver(allow_private),
                        socket_factory=guarded_socket_factory(allow_private), **kwargs)


def refusal(exc: BaseException) -> DestinationRefused | None:
    """The DestinationRefused behind ``exc`` (itself, or in its cause/context chain), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DestinationRefused):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__ or getattr(current, "os_error", None)
    return None


__all__ = ["METADATA_ADDRESSES", "DestinationRefused", "GuardedResolver", "check_url", "forbidden_reason",
           "guarded_connector", "guarded_socket_factory", "is_forbidden", "refusal", "resolve_allowed"]
