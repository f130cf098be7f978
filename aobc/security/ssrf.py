"""Server-side request forgery (SSRF) guard for ``http`` node URLs.

Threat model: whoever writes a workflow, or whatever data reaches it at run time, may control
the URL an ``http`` node fetches. Unchecked, that URL can reach services bound to loopback, the
private network, or a cloud metadata endpoint that hands out credentials. Such targets hide
behind spellings that some HTTP client or resolver accepts: ``0x7f000001``, ``127.1``,
``0177.0.0.1``, ``[::ffff:7f00:1]``, fullwidth digits, percent-encoded hosts, user-info tricks
(``http://good.com@127.0.0.1``) and parser confusion (``http://good.com\\@127.0.0.1``).

The compiler calls :func:`check_url` on static URLs. The runtime calls it again on every request
and redirect, and calls :func:`check_address` on each address DNS returns, right before it
connects; that second check is what defeats DNS names pointing at private addresses and DNS
rebinding. The runtime should connect to ``ParsedUrl.host`` (the canonical form), never re-parse
the original text with a more lenient parser.

The guard fails closed: the parser is stricter than any client (whitespace, control characters,
backslashes in the authority, empty ports and odd host characters are refused, not repaired),
every IP spelling that a client or ``inet_aton`` accepts is decoded and classified exactly, and
any address that is not plainly global unicast is refused.

Rules worth knowing:

* ``internal`` and every ``*.internal`` name are refused as "metadata": GCP and AWS serve their
  metadata names from that zone. An exact allowlist entry (``api.internal``) reopens one name.
* A name in the allowlist opens whatever private address it resolves to, except a cloud
  metadata address: only an address or CIDR entry opens those, so a wildcard entry or a rebound
  DNS record cannot hand out credentials.
* IPv4 embedded in IPv6 (mapped, NAT64, 6to4, IPv4-compatible) is classified by the IPv4 rules;
  a public embedded address passes, except in the deprecated IPv4-compatible form.
* A zone id (``[fe80::1%25eth0]``) is accepted only in brackets as RFC 6874 writes it, and is
  refused on a global address, where it means nothing.
* ``0127.0.0.1`` is octal, 87.0.0.1, as in WHATWG and ``inet_aton``; ``ParsedUrl.host`` holds
  the canonical form so no client can read it differently.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Final, Literal, TypeAlias

__all__ = [
    "CATEGORIES",
    "DEFAULT_POLICY",
    "ParsedUrl",
    "SsrfPolicy",
    "SsrfViolation",
    "UrlError",
    "check_address",
    "check_url",
    "classify_ip",
    "parse_url",
]

_IP: TypeAlias = IPv4Address | IPv6Address
_Net: TypeAlias = IPv4Network | IPv6Network

CATEGORIES: Final = frozenset(
    {
        "scheme",
        "userinfo",
        "malformed",
        "localhost-name",
        "metadata",
        "loopback",
        "private",
        "link-local",
        "cgnat",
        "multicast",
        "unspecified",
        "reserved",
    }
)

# Only schemes whose default port we know; the runtime speaks nothing else.
_DEFAULT_PORTS: Final[Mapping[str, int]] = {"http": 80, "https": 443, "ws": 80, "wss": 443}

_MAX_HOST: Final = 253
_MAX_LABEL: Final = 63


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """A strictly parsed absolute URL with its host normalized."""

    scheme: str
    host: str  # lower-case ASCII (punycode), no trailing dot; IPs canonical, IPv6 unbracketed
    port: int  # explicit, else the scheme's default
    path: str  # "/" when empty; no query, no fragment
    ip: IPv4Address | IPv6Address | None  # set when the host is an IP literal in any spelling
    query: str = ""  # without the "?"; the fragment is dropped


@dataclass(frozen=True, slots=True)
class SsrfViolation:
    """Why a URL or address is refused."""

    category: str
    message: str
    host: str | None


class UrlError(ValueError):
    """A URL that :func:`parse_url` refuses; ``category`` names the broken rule."""

    def __init__(self, category: str, message: str, host: str | None = None) -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.host = host


def _malformed(message: str, host: str | None = None) -> UrlError:
    return UrlError("malformed", message, host)


# --------------------------------------------------------------------------- characters

_BAD_ASCII: Final = re.compile(r"[\x00-\x20\x7f]")

# Unicode Default_Ignorable_Code_Point: clients' IDNA mapping deletes several of these, so
# "local\u034fhost" would reach localhost; refuse them outright.
_IGNORABLE_RANGES: Final = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def _is_ignorable(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _IGNORABLE_RANGES)


def _check_chars(text: str, what: str = "url") -> None:
    """Refuse control characters, whitespace and invisible characters anywhere in ``text``."""
    if text.isascii():
        bad = _BAD_ASCII.search(text)
        if bad is not None:
            raise _malformed(f"{what} contains u+{ord(bad.group()):04x} at offset {bad.start()}")
        return
    for index, ch in enumerate(text):
        if ch.isascii():
            if ch <= " " or ch == "\x7f":
                raise _malformed(f"{what} contains u+{ord(ch):04x} at offset {index}")
        elif unicodedata.category(ch)[0] in "CZ" or _is_ignorable(ch):
            raise _malformed(f"{what} contains u+{ord(ch):04x} at offset {index}")


# --------------------------------------------------------------------------- URL syntax

_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_AUTHORITY_END: Final = re.compile(r"[/?#\\]")
_PORT: Final = re.compile(r"[0-9]{1,10}")


def _split_scheme(url: str) -> tuple[str, str]:
    match = _SCHEME.match(url)
    if match is None:
        raise UrlError("scheme", "url has no scheme")
    return match.group(1).lower(), url[match.end() :]


def _split_authority(scheme: str, rest: str) -> tuple[str, str, str]:
    """Split what follows ``scheme:`` into authority, path and query."""
    if not rest.startswith("//"):
        # WHATWG would repair "http:host" or "http:\\host"; we refuse instead.
        raise _malformed(f'expected "//" after "{scheme}:"')
    body = rest[2:]
    end_match = _AUTHORITY_END.search(body)
    end = len(body) if end_match is None else end_match.start()
    if end_match is not None and body[end] == "\\":
        # Clients disagree on whether "\" ends the authority; that is the confusion attacks need.
        raise _malformed("backslash in the url authority")
    authority = body[:end]
    tail = body[end:].partition("#")[0]
    path, _, query = tail.partition("?")
    return authority, path or "/", query


def _split_host_port(authority: str) -> tuple[str, str | None, bool]:
    """Return (host text, port text or None, bracketed)."""
    if "@" in authority:
        raise UrlError("userinfo", 'url contains user-info ("@" in the authority)')
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise _malformed('unterminated "[" in the url host')
        after = authority[close + 1 :]
        if after and not after.startswith(":"):
            raise _malformed('unexpected text after "]" in the url host')
        return authority[1:close], (after[1:] if after else None), True
    if "[" in authority or "]" in authority:
        raise _malformed('stray "[" or "]" in the url host')
    if authority.count(":") > 1:
        raise _malformed('more than one ":" in the url authority (ipv6 hosts need brackets)')
    host, sep, port = authority.partition(":")
    return host, (port if sep else None), False


def _parse_port(text: str | None, scheme: str) -> int:
    if text is None:
        default = _DEFAULT_PORTS.get(scheme)
        if default is None:
            raise _malformed(f'scheme "{scheme}" has no default port; give one')
        return default
    if not text:
        raise _malformed('empty port after ":"')
    if not _PORT.fullmatch(text):
        raise _malformed(f'bad port "{_printable(text)}"')
    port = int(text)
    if not 0 < port <= 65535:
        raise _malformed(f"port {port} is out of range 1-65535")
    return port


def _printable(text: str, limit: int = 80) -> str:
    """``text`` escaped and cut short, safe to put in a message."""
    escaped = text.encode("unicode_escape").decode("ascii").lower()
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."


# --------------------------------------------------------------------------- hosts

_PCT_BAD: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PCT_BYTES: Final = re.compile(rb"%([0-9A-Fa-f]{2})")
_ASCII_LABEL: Final = re.compile(r"[a-z0-9_\-]+")
_IPV6_TEXT: Final = re.compile(r"[0-9A-Fa-f:.]+")
_ZONE: Final = re.compile(r"[A-Za-z0-9._~\-]+")
# NFKC leaves these ideographic full stops alone but IDNA (UTS 46) maps them to ".".
_DOTS: Final = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_DIGITS: Final = {8: frozenset("01234567"), 10: frozenset("0123456789")}
_HEX_DIGITS: Final = frozenset("0123456789abcdef")


def _percent_decode(text: str) -> str:
    if _PCT_BAD.search(text):
        raise _malformed('bad percent-encoding in the url host ("%" without two hex digits)')
    data = _PCT_BYTES.sub(lambda m: bytes.fromhex(m.group(1).decode("ascii")), text.encode())
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("percent-encoded url host is not utf-8") from None


def _fold(text: str) -> str:
    """Map ``text`` the way browsers' IDNA processing does: NFKC, lower-case, IDNA full stops."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).lower())
    return folded.translate(_DOTS)


def _check_unicode_label(label: str) -> None:
    for ch in label:
        if ch.isascii():
            if not _ASCII_LABEL.fullmatch(ch):
                raise _malformed(f'character "{_printable(ch)}" is not allowed in a host name')
        elif unicodedata.category(ch)[0] not in "LMN" or _is_ignorable(ch):
            raise _malformed(f"character u+{ord(ch):04x} is not allowed in a host name")
    if unicodedata.category(label[0])[0] == "M":
        raise _malformed("host name label starts with a combining mark")


def _check_ace_label(label: str) -> None:
    """Refuse "xn--" labels that a client could decode to something else than they look."""
    try:
        decoded = label[4:].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError, IndexError, OverflowError):
        raise _malformed(f'invalid punycode label "{label}"') from None
    if not decoded or decoded.isascii() or _fold(decoded) != decoded:
        raise _malformed(f'punycode label "{label}" is not in normal form')
    _check_unicode_label(decoded)


def _to_ascii_label(label: str) -> str:
    if not label:
        raise _malformed("empty label in the url host")
    if label.isascii():
        if not _ASCII_LABEL.fullmatch(label):
            bad = next(ch for ch in label if not _ASCII_LABEL.fullmatch(ch))
            raise _malformed(f'character "{_printable(bad)}" is not allowed in a host name')
        if label.startswith("xn--"):
            _check_ace_label(label)
        ascii_label = label
    else:
        if label.startswith("xn--"):
            raise _malformed("punycode label contains non-ascii characters")
        _check_unicode_label(label)
        ascii_label = "xn--" + label.encode("punycode").decode("ascii")
    if len(ascii_label) > _MAX_LABEL:
        raise _malformed("host name label is longer than 63 characters")
    return ascii_label


def _ipv4_number(part: str) -> int:
    """One dotted part as WHATWG and ``inet_aton`` read it: 0x hex, leading-0 octal, decimal."""
    if not part:
        raise _malformed("empty part in an ipv4 address")
    if part.startswith("0x"):
        digits, allowed, base = part[2:], _HEX_DIGITS, 16
    elif len(part) > 1 and part[0] == "0":
        digits, allowed, base = part[1:], _DIGITS[8], 8
    else:
        digits, allowed, base = part, _DIGITS[10], 10
    if len(digits) > 40 or not allowed.issuperset(digits):
        raise _malformed(f'"{_printable(part)}" is not a number in any ipv4 spelling')
    return int(digits, base) if digits else 0


def _parse_ipv4(labels: list[str]) -> IPv4Address:
    if len(labels) > 4:
        raise _malformed("ipv4 address has more than four parts")
    numbers = [_ipv4_number(part) for part in labels]
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise _malformed("ipv4 address part is out of range")
    value = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        value += number << (8 * (3 - index))
    return IPv4Address(value)


def _normalize_host(text: str) -> tuple[str, _IP | None]:
    """Normalize a non-bracketed host; return (host, ip if the host is an IPv4 literal)."""
    if not text:
        raise _malformed("empty host")
    if "%" in text:
        # Clients percent-decode hosts, so "%31%32%37.0.0.1" is 127.0.0.1.
        text = _percent_decode(text)
        _check_chars(text, "decoded url host")
    host = text.lower() if text.isascii() else _fold(text)
    if "@" in host:
        # Only a decoded "%40" or a compatibility "@" can get here; both smell of user-info.
        raise UrlError("userinfo", 'url contains user-info ("@" in the host)')
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise _malformed("empty host")
    if len(host) > _MAX_HOST:
        raise _malformed("host is longer than 253 characters")
    labels = host.split(".")
    # WHATWG "ends in a number": such a host is an IPv4 literal or an error, never a DNS name.
    # We widen the test to any digit so no numeric-looking TLD slips through to the resolver.
    if labels[-1][:1].isdigit():
        ip = _parse_ipv4(labels)
        return str(ip), ip
    ascii_host = ".".join(_to_ascii_label(label) for label in labels)
    if len(ascii_host) > _MAX_HOST:
        raise _malformed("host is longer than 253 characters")
    return ascii_host, None


def _parse_ipv6(text: str) -> tuple[str, IPv6Address]:
    """Parse the inside of ``[...]``; return (host, ip) with any zone id kept in the host."""
    addr_text, pct, zone = text.partition("%")
    if pct:
        # RFC 6874: the zone separator is written "%25".
        if not zone.startswith("25") or not _ZONE.fullmatch(zone[2:]):
            raise _malformed("bad zone id in the ipv6 url host")
        zone = zone[2:]
    if not _IPV6_TEXT.fullmatch(addr_text):
        raise _malformed(f'"{_printable(addr_text)}" is not an ipv6 address')
    try:
        ip = IPv6Address(addr_text)
    except ValueError:
        raise _malformed(f'"{addr_text}" is not an ipv6 address') from None
    return (f"{ip.compressed}%{zone}" if pct else ip.compressed), ip


# --------------------------------------------------------------------------- parse_url


def _parse_after_scheme(scheme: str, rest: str) -> tuple[ParsedUrl, str]:
    authority, path, query = _split_authority(scheme, rest)
    host_text, port_text, bracketed = _split_host_port(authority)
    port = _parse_port(port_text, scheme)
    ip: _IP | None
    if bracketed:
        host, ip = _parse_ipv6(host_text)
    else:
        host, ip = _normalize_host(host_text)
    parsed = ParsedUrl(scheme=scheme, host=host, port=port, path=path, ip=ip, query=query)
    return parsed, host_text.lower()


def parse_url(url: str) -> ParsedUrl:
    """Parse an absolute URL strictly; raise :class:`UrlError` (a ``ValueError``) if malformed."""
    if not isinstance(url, str):
        raise _malformed("url must be a string")
    _check_chars(url)
    scheme, rest = _split_scheme(url)
    return _parse_after_scheme(scheme, rest)[0]


# --------------------------------------------------------------------------- classification

_V4_METADATA: Final = frozenset(
    int(IPv4Address(a))
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.123",  # AWS time sync
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
_V6_METADATA: Final = frozenset({int(IPv6Address("fd00:ec2::254"))})  # AWS IMDS over IPv6


def _table(rows: tuple[tuple[str, str], ...]) -> tuple[tuple[int, int, str], ...]:
    nets = [(ip_network(cidr), kind) for cidr, kind in rows]
    return tuple((int(n.network_address), int(n.netmask), kind) for n, kind in nets)


_V4_TABLE: Final = _table(
    (
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("169.254.0.0/16", "link-local"),
        ("100.64.0.0/10", "cgnat"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255
        ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
        ("192.0.2.0/24", "reserved"),  # TEST-NET-1
        ("198.51.100.0/24", "reserved"),  # TEST-NET-2
        ("203.0.113.0/24", "reserved"),  # TEST-NET-3
        ("198.18.0.0/15", "reserved"),  # benchmarking
        ("192.88.99.0/24", "reserved"),  # deprecated 6to4 relay anycast
    )
)

# Kinds starting with "embed-" carry an IPv4 address that is classified by the IPv4 rules.
_V6_TABLE: Final = _table(
    (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::ffff:0:0/96", "embed-mapped"),
        ("::/96", "embed-compat"),
        ("64:ff9b::/96", "embed-nat64"),
        ("64:ff9b:1::/48", "private"),  # RFC 8215 local-use NAT64
        ("2002::/16", "embed-6to4"),
        ("2001::/23", "reserved"),  # IETF protocol assignments, includes Teredo 2001::/32
        ("2001:db8::/32", "reserved"),  # documentation
        ("3fff::/20", "reserved"),  # documentation (RFC 9637)
        ("fc00::/7", "private"),  # unique local
        ("fe80::/10", "link-local"),
        ("fec0::/10", "private"),  # deprecated site-local: the old private range
        ("ff00::/8", "multicast"),
    )
)
_V6_GLOBAL_UNICAST: Final = _table((("2000::/3", "global"),))[0]

_Hit: TypeAlias = tuple[str, _IP]


def _not_global(ip: _IP) -> bool:
    """Second opinion from ``ipaddress``, in case our tables miss a range."""
    return (
        not ip.is_global
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
    )


def _classify_v4(ip: IPv4Address) -> _Hit | None:
    value = int(ip)
    if value in _V4_METADATA:
        return "metadata", ip
    for net, mask, kind in _V4_TABLE:
        if value & mask == net:
            return kind, ip
    return ("reserved", ip) if _not_global(ip) else None


def _classify_embedded(ip: IPv6Address, kind: str, value: int) -> _Hit | None:
    v4 = IPv4Address((value >> 80) & 0xFFFFFFFF if kind == "embed-6to4" else value & 0xFFFFFFFF)
    hit = _classify_v4(v4)
    if hit is None and kind == "embed-compat":
        # IPv4-compatible addresses are deprecated (RFC 4291); nothing legitimate uses them.
        return "reserved", ip
    return hit


def _classify_v6(ip: IPv6Address) -> _Hit | None:
    value = int(ip)  # drops any scope id
    if value in _V6_METADATA:
        return "metadata", ip
    for net, mask, kind in _V6_TABLE:
        if value & mask == net:
            if kind.startswith("embed-"):
                return _classify_embedded(ip, kind, value)
            return kind, ip
    gnet, gmask, _ = _V6_GLOBAL_UNICAST
    if value & gmask != gnet or _not_global(IPv6Address(value)):
        return "reserved", ip
    return None


def _classify(ip: _IP) -> _Hit | None:
    """The category and the address (possibly an embedded IPv4) that earned it."""
    if isinstance(ip, IPv4Address):
        return _classify_v4(ip)
    if isinstance(ip, IPv6Address):
        return _classify_v6(ip)
    raise TypeError(f"expected an IPv4Address or IPv6Address, got {type(ip).__name__}")


def classify_ip(ip: IPv4Address | IPv6Address) -> str | None:
    """The category of a non-public address, or None when ``ip`` is global unicast."""
    hit = _classify(ip)
    return None if hit is None else hit[0]


_LOCALHOST_NAMES: Final = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "localhost4",
        "localhost4.localdomain4",
        "localhost6",
        "localhost6.localdomain6",
        # Debian/Ubuntu /etc/hosts aliases for ::1 and the IPv6 multicast groups.
        "ip6-localhost",
        "ip6-loopback",
        "ip6-localnet",
        "ip6-mcastprefix",
        "ip6-allnodes",
        "ip6-allrouters",
        "ip6-allhosts",
    }
)
_METADATA_NAMES: Final = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "internal"}
)


def _name_violation(host: str, raw: str) -> SsrfViolation | None:
    if host in _LOCALHOST_NAMES or host.endswith(".localhost"):
        return SsrfViolation("localhost-name", f'host "{raw}" is a localhost name', host)
    if host in _METADATA_NAMES or host.endswith(".metadata.goog"):
        return SsrfViolation("metadata", f'host "{raw}" is a cloud metadata name', host)
    if host.endswith(".internal"):
        # GCP resolves metadata.google.internal and AWS instance-data.ec2.internal through it.
        message = f'host "{raw}" is under ".internal", used for cloud metadata and private dns'
        return SsrfViolation("metadata", message, host)
    return None


_WORDS: Final[Mapping[str, str]] = {
    "metadata": "the cloud metadata address",
    "loopback": "the loopback address",
    "private": "the private address",
    "link-local": "the link-local address",
    "cgnat": "the carrier-grade nat address",
    "multicast": "the multicast address",
    "unspecified": "the unspecified address",
    "reserved": "the reserved (non-global) address",
}


def _address_phrase(ip: _IP, hit: _Hit) -> str:
    kind, matched = hit
    if int(matched) == int(ip) and matched.version == ip.version:
        return f"{_WORDS[kind]} {matched}"
    return f"{ip}, which embeds {_WORDS[kind]} {matched}"


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True, slots=True)
class _AllowRule:
    kind: Literal["name", "suffix", "net"]
    name: str  # the host name, or the suffix without "*."; "" for nets
    version: int  # 4 or 6 for nets, 0 otherwise
    net: int
    mask: int
    port: int | None

    def matches_ip(self, ip: _IP) -> bool:
        # ipaddress's own "in" compares integers without always checking the version.
        return self.kind == "net" and ip.version == self.version and int(ip) & self.mask == self.net

    def matches_name(self, host: str) -> bool:
        if self.kind == "name":
            return host == self.name
        return self.kind == "suffix" and host.endswith("." + self.name)


def _entry_port(entry: str, text: str) -> int:
    if not _PORT.fullmatch(text) or not 0 < int(text) <= 65535:
        raise ValueError(f'allow_hosts entry "{entry}": bad port "{text}"')
    return int(text)


def _split_entry(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        close = entry.find("]")
        inner, after = entry[1:close], entry[close + 1 :]
        if close < 0 or ":" not in inner or (after and not after.startswith(":")):
            raise ValueError(f'allow_hosts entry "{entry}": brackets must hold an ipv6 address')
        return inner, (_entry_port(entry, after[1:]) if after else None)
    if entry.count(":") > 1:
        return entry, None  # bare IPv6 address or network, no port
    host, sep, port = entry.partition(":")
    return host, (_entry_port(entry, port) if sep else None)


def _net_rule(net: _Net, port: int | None) -> _AllowRule:
    mask, addr = int(net.netmask), int(net.network_address)
    return _AllowRule("net", "", net.version, addr, mask, port)


def _parse_allow_entry(entry: object) -> _AllowRule:
    if not isinstance(entry, str):
        raise ValueError(f"allow_hosts entries must be strings, got {_json_type(entry)}")
    if not entry:
        raise ValueError("allow_hosts entry is empty")
    try:
        _check_chars(entry, f'allow_hosts entry "{_printable(entry)}"')
        text, port = _split_entry(entry)
        if "/" in text:
            try:
                return _net_rule(ip_network(text, strict=True), port)
            except ValueError as exc:
                message = f'allow_hosts entry "{entry}" is not a valid cidr: {exc}'
                raise ValueError(message) from None
        if ":" in text:
            addr = _parse_ipv6(text)[1]
            return _net_rule(ip_network(addr), port)
        wildcard = text.startswith("*.")
        host, ip = _normalize_host(text[2:] if wildcard else text)
    except UrlError as exc:
        raise ValueError(f'allow_hosts entry "{_printable(entry)}": {exc.message}') from None
    if "*" in host or (wildcard and ip is not None):
        raise ValueError(f'allow_hosts entry "{entry}": "*." may only prefix a domain name')
    if ip is not None:
        return _net_rule(ip_network(ip), port)
    return _AllowRule("suffix" if wildcard else "name", host, 0, 0, 0, port)


def _parse_scheme_entry(scheme: object) -> str:
    if not isinstance(scheme, str):
        raise ValueError(f"allowed_schemes entries must be strings, got {_json_type(scheme)}")
    lowered = scheme.lower()
    if lowered not in _DEFAULT_PORTS:
        known = ", ".join(_DEFAULT_PORTS)
        raise ValueError(f'allowed_schemes entry "{_printable(scheme)}" is not one of {known}')
    return lowered


def _json_type(value: object) -> str:
    names = {str: "string", bool: "boolean", int: "number", float: "number", dict: "object"}
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "array"
    return names.get(type(value), type(value).__name__)


def _strings(obj: Mapping[object, object], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if key not in obj:
        return default
    value = obj[key]
    if not isinstance(value, list | tuple):
        got = _json_type(value)
        raise ValueError(f'ssrf policy "{key}" must be an array of strings, got {got}')
    for index, item in enumerate(value):
        if not isinstance(item, str):
            got = _json_type(item)
            raise ValueError(f'ssrf policy "{key}"[{index}] must be a string, got {got}')
    return tuple(value)


_POLICY_KEYS: Final = ("allow_hosts", "allowed_schemes")


@dataclass(frozen=True, slots=True)
class SsrfPolicy:
    """Which hosts are opened despite the default deny rules.

    ``allow_hosts`` entries: ``name``, ``*.suffix`` (subdomains only), an IP literal or a CIDR,
    each optionally with ``:PORT`` (``[v6]:PORT`` for IPv6). Names and IPs are normalized like
    URL hosts, so ``127.0.0.1`` also opens ``http://0x7f000001/``.
    """

    allow_hosts: tuple[str, ...] = ()
    allowed_schemes: tuple[str, ...] = ("http", "https")
    _rules: tuple[_AllowRule, ...] = field(default=(), init=False, repr=False, compare=False)
    _schemes: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Validate here, not only in from_json, so a hand-built policy cannot be silently wrong.
        for name in _POLICY_KEYS:
            if not isinstance(getattr(self, name), tuple):
                raise ValueError(f"SsrfPolicy.{name} must be a tuple of strings")
        object.__setattr__(self, "_rules", tuple(map(_parse_allow_entry, self.allow_hosts)))
        schemes = frozenset(map(_parse_scheme_entry, self.allowed_schemes))
        object.__setattr__(self, "_schemes", schemes)

    @staticmethod
    def from_json(obj: object) -> SsrfPolicy:
        """Build a policy from ``{"allow_hosts": [...], "allowed_schemes": [...]}``."""
        if not isinstance(obj, Mapping):
            raise ValueError(f"ssrf policy must be a json object, got {_json_type(obj)}")
        unknown = sorted(repr(key) for key in obj if key not in _POLICY_KEYS)
        if unknown:
            expected = ", ".join(_POLICY_KEYS)
            raise ValueError(f"unknown ssrf policy keys {', '.join(unknown)}; expected {expected}")
        return SsrfPolicy(
            allow_hosts=_strings(obj, "allow_hosts", ()),
            allowed_schemes=_strings(obj, "allowed_schemes", ("http", "https")),
        )


DEFAULT_POLICY: Final = SsrfPolicy()


def _allowed(
    policy: SsrfPolicy, name: str | None, ip: _IP | None, port: int | None, category: str | None
) -> bool:
    for rule in policy._rules:
        if rule.port is not None and rule.port != port:
            continue
        if ip is not None and rule.matches_ip(ip):
            return True
        # A name never opens a metadata address: only an address or CIDR entry does, so a
        # wildcard or a rebound DNS record cannot hand out cloud credentials.
        if name is not None and category != "metadata" and rule.matches_name(name):
            return True
    return False


# --------------------------------------------------------------------------- checks


def _check_parsed(parsed: ParsedUrl, raw: str, policy: SsrfPolicy) -> SsrfViolation | None:
    if parsed.ip is None:
        if _allowed(policy, parsed.host, None, parsed.port, None):
            return None
        return _name_violation(parsed.host, raw)
    hit = _classify(parsed.ip)
    if _allowed(policy, None, parsed.ip, parsed.port, None if hit is None else hit[0]):
        return None
    if hit is not None:
        message = f'host "{raw}" is {_address_phrase(parsed.ip, hit)}'
        return SsrfViolation(hit[0], message, parsed.host)
    if "%" in parsed.host:
        return SsrfViolation("malformed", "zone id on a global ipv6 address", parsed.host)
    return None


def check_url(url: str, policy: SsrfPolicy = DEFAULT_POLICY) -> SsrfViolation | None:
    """Why ``url`` must not be fetched under ``policy``, or None when it may be."""
    try:
        if not isinstance(url, str):
            raise _malformed("url must be a string")
        _check_chars(url)
        scheme, rest = _split_scheme(url)
        if scheme not in policy._schemes:
            allowed = ", ".join(sorted(policy._schemes)) or "none"
            message = f'scheme "{_printable(scheme)}" is not allowed (allowed: {allowed})'
            return SsrfViolation("scheme", message, None)
        parsed, raw = _parse_after_scheme(scheme, rest)
    except UrlError as exc:
        return SsrfViolation(exc.category, exc.message, exc.host)
    return _check_parsed(parsed, raw, policy)


def _coerce_address(addr: object) -> _IP:
    if isinstance(addr, IPv4Address | IPv6Address):
        return addr
    if isinstance(addr, str):
        return ip_address(addr)  # strict: no octal, hex or short forms from a resolver
    raise ValueError("not an address")


def _allow_name(host: str | None) -> str | None:
    if host is None:
        return None
    try:
        _check_chars(host, "host")
        name, ip = _normalize_host(host)
    except UrlError:
        return None  # an unusable name just does not match; the address rules still apply
    return name if ip is None else None


def check_address(
    addr: str | IPv4Address | IPv6Address,
    policy: SsrfPolicy = DEFAULT_POLICY,
    *,
    host: str | None = None,
    port: int | None = None,
) -> SsrfViolation | None:
    """Check an address about to be connected to (after DNS); ``host`` is the name resolved."""
    try:
        ip = _coerce_address(addr)
    except ValueError:
        text = _printable(addr) if isinstance(addr, str) else type(addr).__name__
        return SsrfViolation("malformed", f'"{text}" is not an ip address', host)
    hit = _classify(ip)
    if _allowed(policy, _allow_name(host), ip, port, None if hit is None else hit[0]):
        return None
    if hit is None:
        return None
    phrase = _address_phrase(ip, hit)
    if host is None:
        return SsrfViolation(hit[0], f"connecting to {phrase} is not allowed", str(ip))
    return SsrfViolation(hit[0], f'host "{_printable(host)}" resolved to {phrase}', host)
