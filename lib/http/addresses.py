"""Which URLs and addresses webhooks may go to: URL parsing and checks, the public-address
policy and its exceptions (allowed networks), and URLs masked for display.

Merchants type these URLs, so this is the SSRF guard's policy: a URL is refused unless it is
http(s) and every address its host resolves to is public or in an allowed network. The same
checks serve :func:`check_url` at save time and the checks of every request at send time.

Tests (and the API's schema test) replace ``lib.http.is_public_address``, the attribute
of the package, so :func:`address_allowed` reads that attribute at call time.

Imports only ``dns`` and ``errors`` of this package.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import idna

from lib.http.dns import IPAddress, literal_address, lookup, lookup_async
from lib.http.errors import TransportError, timeout_error

MAX_URL_LENGTH = 2048
BLOCKED_MESSAGE = "blocked: address not public"

IPNetwork = IPv4Network | IPv6Network

_CHECK_URL_DNS_TIMEOUT = 10.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_PATTERN = re.compile(r"^[a-z0-9_.-]+$")

# Ranges that are not reachable on the public internet, or that point back into our own network.
# ipaddress' own flags vary between Python patch releases, so the list is spelled out here.
_BLOCKED_V4 = tuple(
    IPv4Network(cidr)
    for cidr in (
        "0.0.0.0/8",  # "this network", includes the unspecified address
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, includes cloud metadata at 169.254.169.254
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes the broadcast address
    )
)
_GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")
_BLOCKED_V6 = tuple(
    IPv6Network(cidr)
    for cidr in (
        "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID...
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
    )
)
_NAT64_V6 = IPv6Network("64:ff9b::/96")


def check_url(
    url: str,
    *,
    require_https: bool,
    allowed_networks: Sequence[IPNetwork] | None = None,
    resolve: bool = True,
) -> None:
    """Check at save time that a URL may be used as a webhook URL.

    An IP address literal is always checked; a host name only when ``resolve`` is True.

    Args:
        url: The URL as entered by the user.
        require_https: Refuse http:// URLs.
        allowed_networks: Non-public networks that may be used anyway; None reads the Django
            setting WEBHOOK_ALLOWED_NETWORKS (empty without Django settings).
        resolve: Resolve the host name and check every address it resolves to.

    Raises:
        ValueError: With a short, user-facing message fit for a form field or an API 400.
    """
    host, port = _checked_url_parts(url, require_https=require_https)
    literal = literal_address(host)
    if literal is None and not resolve:
        return
    networks = effective_networks(allowed_networks)
    addresses = [literal] if literal is not None else _resolve_for_check(host, port)
    if not all(address_allowed(ip, networks) for ip in addresses):
        raise ValueError("This address is not allowed: it is not a public address.")


def is_public_address(ip: IPAddress) -> bool:
    """Tell whether an address is a public unicast address, safe to send webhooks to.

    IPv6 forms that embed an IPv4 address (IPv4-mapped, NAT64, 6to4) are judged by that
    IPv4 address, so ``::ffff:127.0.0.1`` is not public.

    Args:
        ip: The address to check.

    Returns:
        True for a public address; False for loopback, private, link-local, CGNAT, reserved,
        multicast, documentation, unspecified and similar ranges.
    """
    if isinstance(ip, IPv4Address):
        return ip.is_global and not any(ip in network for network in _BLOCKED_V4)
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return is_public_address(embedded)
    return (
        ip in _GLOBAL_UNICAST_V6
        and ip.is_global
        and not any(ip in network for network in _BLOCKED_V6)
    )


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """Parse CIDR strings, such as the WEBHOOK_ALLOWED_NETWORKS setting.

    Args:
        values: CIDR strings ("10.0.0.0/8", "::1/128"); a bare address means just that address.
            A single string is split on commas and whitespace.

    Returns:
        The networks, in the given order; blank entries are skipped.

    Raises:
        ValueError: An entry is not a network.
    """
    if isinstance(values, str):
        values = re.split(r"[,\s]+", values)
    networks: list[IPNetwork] = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            # strict=False like the settings validation: "10.0.0.5/8" means 10.0.0.0/8.
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise ValueError(f"Invalid network {text!r}: {exc}") from None
    return networks


def mask_url(url: str) -> str:
    """Hide the password of a URL, for display and logs.

    Args:
        url: Any URL, e.g. "https://user:secret@host/path".

    Returns:
        The same URL with only the password replaced: "https://user:****@host/path".
        URLs without a password come back unchanged.
    """
    marker = url.find("://")
    if marker == -1:
        return url
    start = marker + 3
    # The authority ends where urlsplit ends it, so we mask what the sender would use.
    end = min((i for i in (url.find(c, start) for c in "/?#") if i != -1), default=len(url))
    at = url.rfind("@", start, end)
    colon = url.find(":", start, at) if at != -1 else -1
    if colon == -1:
        return url
    return f"{url[: colon + 1]}****{url[at:]}"


@dataclass(frozen=True)
class Target:
    """A URL taken apart for sending: credentials out of the URL, the host ready for DNS."""

    url: str  # without credentials: what is actually requested
    host: str  # IDNA-encoded, without IPv6 brackets
    port: int
    authorization: str | None


def parse_target(url: str) -> Target:
    """Parse a URL at send time; TransportError (permanent) if it cannot be sent to."""
    try:
        parts = urlsplit(url)
        explicit_port = parts.port
        host = _normalize_host(parts.hostname or "")
    except ValueError:
        raise TransportError("invalid URL", permanent=True) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise TransportError("unsupported URL scheme (only http and https)", permanent=True)
    if not host:
        raise TransportError("invalid URL", permanent=True)
    netloc = _format_host(host) + (f":{explicit_port}" if explicit_port is not None else "")
    clean_url = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    port = explicit_port or _DEFAULT_PORTS[scheme]
    return Target(clean_url, host, port, _basic_authorization(parts))


def _normalize_host(host: str) -> str:
    # requests would IDNA-encode the host anyway; we need the same name for DNS and TLS.
    if host.isascii():
        return host
    return idna.encode(host, uts46=True).decode("ascii")


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _basic_authorization(parts: SplitResult) -> str | None:
    if not parts.username and not parts.password:
        return None
    credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")


def _checked_url_parts(url: str, *, require_https: bool) -> tuple[str, int]:
    if not isinstance(url, str) or not url:
        raise ValueError("Enter a valid URL.")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"The URL is too long (at most {MAX_URL_LENGTH} characters).")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("Enter a valid URL.") from None
    if not parts.scheme or "://" not in url:
        raise ValueError("Enter a valid URL.")
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("Only http:// and https:// URLs are allowed.")
    if require_https and scheme != "https":
        raise ValueError("The URL must use https://.")
    return _checked_host_and_port(url, parts)


def _checked_host_and_port(url: str, parts: SplitResult) -> tuple[str, int]:
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError("Enter a valid URL.")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme.lower()]
        host = _normalize_host(parts.hostname or "")
    except ValueError:
        raise ValueError("Enter a valid URL.") from None
    if literal_address(host) is None and not _HOST_PATTERN.match(host):
        raise ValueError("Enter a valid URL.")
    return host, port


def _resolve_for_check(host: str, port: int) -> list[IPAddress]:
    try:
        addresses = lookup(host, port, _CHECK_URL_DNS_TIMEOUT)
    except (OSError, ValueError):
        raise ValueError("The host could not be resolved.") from None
    if not addresses:
        raise ValueError("The host could not be resolved.")
    return addresses


def _embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64_V6:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def address_allowed(ip: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    """Tell whether an address may be used: public, or in one of the allowed networks."""
    # The package's attribute, looked up at call time, so a replaced policy takes effect.
    if sys.modules[__package__].is_public_address(ip):
        return True
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    # `in` compares integers only, so a version mismatch must be ruled out first.
    return any(
        candidate.version == network.version and candidate in network
        for candidate in candidates
        for network in networks
    )


def effective_networks(allowed_networks: Sequence[IPNetwork] | None) -> list[IPNetwork]:
    """The networks a caller allowed, or the WEBHOOK_ALLOWED_NETWORKS setting for None."""
    if allowed_networks is not None:
        return list(allowed_networks)
    return _settings_networks()


def _settings_networks() -> list[IPNetwork]:
    # Imported here: the module must work, and its tests run, without Django settings.
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured
    except ImportError:
        return []
    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return []
    try:
        values = getattr(settings, "WEBHOOK_ALLOWED_NETWORKS", None)
    except (ImportError, ImproperlyConfigured):
        # Broken settings can only mean fewer exceptions to the SSRF guard, never more.
        return []
    return parse_networks(values or [])


def checked_addresses(
    target: Target, networks: Sequence[IPNetwork], deadline: float, limit: float
) -> list[IPAddress]:
    """Resolve a request's host by its deadline and return the addresses, all allowed.

    Raises:
        TransportError: Timed out, did not resolve, or some address is not allowed.
    """
    try:
        addresses = lookup(target.host, target.port, deadline - time.monotonic())
    except TimeoutError:
        raise timeout_error(limit) from None
    except (OSError, ValueError):
        raise TransportError(f"could not resolve host {target.host}") from None
    return allowed_addresses(target, addresses, networks)


async def checked_addresses_async(
    target: Target, networks: Sequence[IPNetwork], deadline: float, limit: float
) -> list[IPAddress]:
    """:func:`checked_addresses` for an event loop (the lookup never blocks the loop)."""
    try:
        addresses = await lookup_async(target.host, target.port, deadline - time.monotonic())
    except TimeoutError:
        raise timeout_error(limit) from None
    except (OSError, ValueError):
        raise TransportError(f"could not resolve host {target.host}") from None
    return allowed_addresses(target, addresses, networks)


def allowed_addresses(
    target: Target, addresses: list[IPAddress], networks: Sequence[IPNetwork]
) -> list[IPAddress]:
    """The addresses a host resolved to, if every one of them may be sent to.

    Raises:
        TransportError: No address, or some address (or its port) is not allowed.
    """
    if not addresses:
        raise TransportError(f"could not resolve host {target.host}")
    # One bad address is enough: the system could pick it on any connection attempt.
    if not all(address_allowed(ip, networks) for ip in addresses):
        raise TransportError(BLOCKED_MESSAGE, permanent=True)
    ports = _settings_ports()
    if ports and target.port not in ports and not all(is_public_address(ip) for ip in addresses):
        # Checked again at send time: a name saved as pointing elsewhere may resolve here now.
        raise TransportError("blocked: port not allowed for this address", permanent=True)
    return addresses


def _settings_ports() -> list[int]:
    """WEBHOOK_ALLOWED_PORTS: the only ports a non-public allowed address may be sent to."""
    if not _settings_networks():
        return []  # no non-public network is allowed at all, so no port rule to apply
    from django.conf import settings

    return list(getattr(settings, "WEBHOOK_ALLOWED_PORTS", None) or [])
