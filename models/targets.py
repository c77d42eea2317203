"""Where merchants' webhooks may be sent: http(s) addresses on the public internet.

In production a target that is (or resolves to) a loopback, private, link-local or
otherwise reserved address is refused, at registration and again before every
delivery (a name may be pointed elsewhere later), so that the feature cannot be used
to reach the service's own network. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

MAX_URL = 2048


class TargetRefused(ValueError):
    """The address may never be delivered to."""


class TargetUnresolved(OSError):
    """The address's name does not resolve now (maybe later)."""


def check_url(url: str) -> SplitResult:
    """The URL's parts, or TargetRefused saying what is wrong with it."""
    if len(url) > MAX_URL:
        raise TargetRefused(f"a webhook URL has at most {MAX_URL} characters")
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:  # a broken [IPv6] literal, say
        raise TargetRefused("the webhook URL cannot be read") from None
    if parts.scheme not in ("http", "https") or not host:
        raise TargetRefused("a webhook URL is http:// or https:// with a host")
    if any(c.isspace() or ord(c) < 32 for c in url.strip()):
        raise TargetRefused("a webhook URL has no spaces or control characters")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("a webhook URL carries no user name or password")
    if parts.fragment:
        raise TargetRefused("a webhook URL has no #fragment")
    try:
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        raise TargetRefused("the webhook URL's port is not a port") from None
    return parts


# IPv6 forms that carry an IPv4 address, or reach IPv4 networks through a translator
# (NAT64, 6to4, Teredo, IPv4-compatible and IPv4-translated): never a webhook target.
_TUNNELS = [
    ipaddress.ip_network(n)
    for n in (
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2002::/16",
        "2001::/32",
        "::/96",
        "::ffff:0:0:0/96",
    )
]


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif any(address in tunnel for tunnel in _TUNNELS):
            return False
    return address.is_global and not address.is_multicast


async def check_target(url: str, allow_private: bool) -> list[str]:
    """Refuse (TargetRefused) a URL that is malformed or, unless `allow_private`,
    points at a non-public address; TargetUnresolved when its name does not resolve.
    The addresses checked (none when private ones are allowed): a delivery connects to
    one of them, never to what a second lookup might say (DNS rebinding)."""
    parts = check_url(url)
    if allow_private:
        return []
    host = parts.hostname or ""
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host,
                parts.port or (443 if parts.scheme == "https" else 80),
                type=socket.SOCK_STREAM,
            )
        except (OSError, UnicodeError) as exc:
            raise TargetUnresolved(f"{host} does not resolve: {exc}") from None
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    if not addresses or not all(_public(a) for a in addresses):
        raise TargetRefused(
            f"{host} is a loopback, private or reserved address: webhooks go to public "
            "addresses only"
        )
    return sorted(str(a) for a in addresses)


@dataclass(frozen=True)
class Pinned:
    """A request to `url` that goes to one checked address: the URL with that address
    for its host, and the name kept where HTTP and TLS need it (Host, SNI and the
    certificate's check)."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, str]


def pinned(url: str, addresses: list[str]) -> Pinned:
    if not addresses:  # private addresses allowed (development): as it is
        return Pinned(url, {}, {})
    parts = urlsplit(url.strip())
    address = addresses[0]
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    extensions = {"sni_hostname": parts.hostname or ""} if parts.scheme == "https" else {}
    return Pinned(urlunsplit(parts._replace(netloc=netloc)), {"Host": parts.netloc}, extensions)
