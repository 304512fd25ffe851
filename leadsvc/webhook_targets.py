"""Where a dealer webhook may point: the public internet, and the networks an operator allows.

A webhook URL set by an admin must not make the worker call this machine, the cloud's metadata
service or the private network it runs in (server-side request forgery). URLs are checked when
they are set (`check_webhook_url`: literal addresses and names that always mean this machine, and
what the name resolves to now) and again at send time (`resolve_webhook_target`), after name
resolution, on the very address the sender then connects to, so a DNS answer changed between the
check and the call cannot slip through. `WEBHOOK_ALLOWED_NETWORKS` lists ranges that are allowed
all the same (a dealer CRM inside the company network, a test receiver on 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Cloud metadata services that sit outside the ranges refused anyway (AWS's IPv6 one is in
#: fc00::/7 and 169.254.169.254 is link-local; Alibaba's is in the carrier NAT range).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text) for text in ("100.100.100.200", "fd00:ec2::254")
)
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "instance-data"})


class RefusedTarget(ValueError):
    """The URL points (or its name resolves) somewhere webhooks may not go; says where."""


def parse_networks(text: str) -> tuple[Network, ...]:
    """`10.0.0.0/8,127.0.0.1/32` as networks; ValueError naming the entry that is not one."""
    networks = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP network such as 10.0.0.0/8") from None
    return tuple(networks)


def _kind_of(address: Address) -> str | None:
    """Why `address` is refused (the kind of address it is), or None if it is public."""
    if address in METADATA_ADDRESSES or str(address) == "169.254.169.254":
        return "a cloud metadata address"
    for test, kind in (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private network address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(address, test):
            return kind
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "a private network address"
    return None


_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598


def refused_kind(address: Address, allowed: Iterable[Network] = ()) -> str | None:
    """The kind of address a webhook may not go to (`a loopback address`), or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address.version == net.version and address in net for net in allowed):
        return None
    return _kind_of(address)


def refusal(address: Address, allowed: Iterable[Network] = ()) -> str | None:
    """Why a webhook may not go to `address`, or None when it may."""
    kind = refused_kind(address, allowed)
    return f"{address} is {kind}" if kind else None


def _refuse_any(host: str, addresses: list[Address], allowed: tuple[Network, ...]) -> None:
    for address in addresses:
        kind = refused_kind(address, allowed)
        if kind and host == str(address):
            raise RefusedTarget(f"{address} is {kind}")
        if kind:
            raise RefusedTarget(f"{host} resolves to {address}, {kind}")


@dataclass(frozen=True)
class WebhookTarget:
    """Where one webhook call goes: the URL's parts and the checked address to connect to."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


def _parts(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a bracket outside an IPv6 address ("Invalid IPv6 URL")
        raise RefusedTarget("it is not an http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedTarget("it is not an http(s) URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise RefusedTarget("its port is not a number from 1 to 65535") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname.rstrip(".").lower(), port, path


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses `host` has now, as the system resolver answers (OSError if none)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def _addresses(resolve: Resolver, host: str, port: int) -> list[Address]:
    return [ipaddress.ip_address(text.split("%", 1)[0]) for text in resolve(host, port)]


def _check_name(host: str) -> None:
    if host in METADATA_NAMES:
        raise RefusedTarget(f"{host} is a cloud metadata service")


def check_webhook_url(
    url: str, allowed: Iterable[Network] = (), resolve: Resolver = system_resolver
) -> None:
    """Raise `RefusedTarget` if `url` points at a refused address now. A name that does not
    resolve is accepted here (it may only exist where the worker runs): the send checks again."""
    allowed = tuple(allowed)
    _scheme, host, port, _path = _parts(url)
    literal = _literal(host)
    if literal is None:
        _check_name(host)
        try:
            addresses = _addresses(resolve, host, port)
        except (OSError, UnicodeError):
            return
    else:
        addresses = [literal]
    _refuse_any(host, addresses, allowed)


def resolve_webhook_target(
    url: str, allowed: Iterable[Network] = (), resolve: Resolver = system_resolver
) -> WebhookTarget:
    """Resolve `url`'s host now and check every address it has; the target to connect to, or
    `RefusedTarget` (also raised as such when the name does not resolve: OSError)."""
    allowed = tuple(allowed)
    scheme, host, port, path = _parts(url)
    literal = _literal(host)
    if literal is None:
        _check_name(host)
    addresses = [literal] if literal is not None else _addresses(resolve, host, port)
    if not addresses:
        raise OSError(f"{host} has no address")
    _refuse_any(host, addresses, allowed)
    return WebhookTarget(scheme, host, port, path, str(addresses[0]))
