"""Where an outgoing request may go: a public address, unless a setting allows others.

A URL's host is resolved (as the request would resolve it) and every address it gives must
be global: not loopback, private (RFC 1918, unique-local), link-local (cloud metadata at
169.254.169.254 included), shared (100.64/10), multicast, reserved or unspecified. An
IPv4-mapped IPv6 address is judged as the IPv4 address it carries.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from genbatch.errors import GenbatchError

Resolver = Callable[[str], Iterable[str]]


class UnresolvedHost(GenbatchError):
    """Raised when a URL's host does not resolve (may be passing: worth a retry)."""


def resolve(host: str) -> list[str]:
    """Every address `host` resolves to (an IP literal is itself)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnresolvedHost(f"host {host} does not resolve") from exc
    return [str(info[4][0]) for info in infos]


def kind(address: str) -> str | None:
    """What makes `address` non-public ("loopback", "private", ...), or None if public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for name in ("loopback", "unspecified", "link_local", "private", "multicast", "reserved"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    return None if ip.is_global else "non-public"


def non_public(url: str, resolver: Resolver = resolve) -> str | None:
    """Why `url` may not be called (its host is or resolves to a non-public address), or
    None. Raises UnresolvedHost when the host does not resolve."""
    host = urlsplit(url).hostname or ""
    for address in resolver(host):
        found = kind(address)
        if found is not None:
            return f"host {host} is a {found} address" if host == address else \
                f"host {host} resolves to a {found} address"
    return None
