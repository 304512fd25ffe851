"""Per-request identity: a request id (accepted from `X-Request-ID` or generated) and the client."""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass

from flask import Flask, g, request

from leadsvc.input_bounds import without_controls


@dataclass(frozen=True, slots=True)
class ConsentContext:
    """How consent was given: the request's client address, browser, page and request id."""

    ip: str | None
    user_agent: str | None
    source_url: str | None
    request_id: str | None


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def _assign_request_id() -> None:
    offered = request.headers.get("X-Request-ID", "")
    g.request_id = offered if _REQUEST_ID.match(offered) else secrets.token_hex(16)


def _echo_request_id(response):
    request_id = g.get("request_id")
    if request_id:
        response.headers["X-Request-ID"] = request_id
    return response


def consent_context(source_url: str | None) -> ConsentContext:
    """How this request gave consent (client address after ProxyFix, browser, page, request id)."""
    return ConsentContext(
        ip=request.remote_addr,
        user_agent=without_controls(request.headers.get("User-Agent"), 512),
        source_url=source_url or without_controls(request.referrer, 2048),
        request_id=g.get("request_id"),
    )


def client_ip_key() -> str:
    """The client address (after ProxyFix) for rate limits; IPv6 counts as its /64 network."""
    address = request.remote_addr or "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def init_app(app: Flask) -> None:
    app.before_request(_assign_request_id)
    app.after_request(_echo_request_id)
