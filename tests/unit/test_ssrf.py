"""Tests for the SSRF guard."""

# Confusable characters (fullwidth digits, script letters) are the point of many cases here.
# ruff: noqa: RUF001

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from aobc.security.ssrf import (
    CATEGORIES,
    DEFAULT_POLICY,
    ParsedUrl,
    SsrfPolicy,
    SsrfViolation,
    UrlError,
    check_address,
    check_url,
    classify_ip,
    parse_url,
)


def _refused(url: str, policy: SsrfPolicy = DEFAULT_POLICY) -> SsrfViolation:
    violation = check_url(url, policy)
    assert violation is not None, f"{url!r} was not refused"
    return violation


# --------------------------------------------------------------------------- schemes

SCHEME_CASES = [
    "file:///etc/passwd",
    "file://localhost/etc/passwd",
    "FILE:///etc/passwd",
    "gopher://127.0.0.1:70/_GET",
    "gopher://example.com/",
    "ftp://example.com/",
    "dict://127.0.0.1:11211/stat",
    "ldap://example.com/",
    "data:text/plain,hello",
    "javascript:alert(1)",
    "jar:http://example.com/a.jar!/",
    "ws://example.com/",  # allowed only when the policy says so
    "//example.com/",  # scheme-relative
    "example.com/path",
    "127.0.0.1/",
    "127.0.0.1:80/",
    "localhost:8080",
    "",
    "://example.com",
    "1http://example.com/",
    "ｈｔｔｐ://example.com/",  # fullwidth scheme is no scheme
]


@pytest.mark.parametrize("url", SCHEME_CASES)
def test_scheme_refused(url: str) -> None:
    assert _refused(url).category == "scheme"


@pytest.mark.parametrize("url", ["HTTP://example.com/", "hTtPs://example.com/", "https://a.b/"])
def test_scheme_match_is_case_insensitive(url: str) -> None:
    assert check_url(url) is None
    assert parse_url(url).scheme == url.split(":")[0].lower()


def test_policy_can_open_websocket_schemes() -> None:
    policy = SsrfPolicy(allowed_schemes=("HTTPS", "wss"))
    assert check_url("wss://example.com/socket", policy) is None
    assert check_url("WSS://example.com/socket", policy) is None
    assert _refused("http://example.com/", policy).category == "scheme"
    assert parse_url("wss://example.com/").port == 443


def test_allowlist_does_not_open_schemes() -> None:
    policy = SsrfPolicy(allow_hosts=("127.0.0.1", "example.com"))
    assert _refused("gopher://127.0.0.1:70/", policy).category == "scheme"
    assert _refused("ftp://example.com/", policy).category == "scheme"


# --------------------------------------------------------------------------- user-info

USERINFO_CASES = [
    "http://user@example.com/",
    "http://user:pw@example.com/",
    "http://:@example.com/",
    "http://@example.com/",
    "http://good.com@127.0.0.1/",
    "http://good.com:80@127.0.0.1/",
    "http://a@b@127.0.0.1/",
    "http://127.0.0.1%40good.com/",
    "http://good.com%40127.0.0.1/",
    "http://127.0.0.1%2540good.com@evil/",
    "http://[::1]@good.com/",
    "http://good.com＠127.0.0.1/",  # fullwidth commercial at maps to "@"
    "https://user@api.example.com:8443/x",
]


@pytest.mark.parametrize("url", USERINFO_CASES)
def test_userinfo_refused(url: str) -> None:
    assert _refused(url).category == "userinfo"


def test_allowlist_does_not_open_userinfo() -> None:
    policy = SsrfPolicy(allow_hosts=("example.com", "127.0.0.1"))
    assert _refused("http://user@example.com/", policy).category == "userinfo"
    assert _refused("http://example.com@127.0.0.1/", policy).category == "userinfo"


def test_fragment_at_sign_is_not_userinfo() -> None:
    # The authority ends at "#": the real host is 127.0.0.1.
    violation = _refused("http://127.0.0.1#@good.com")
    assert violation.category == "loopback"
    assert parse_url("http://127.0.0.1#@good.com").host == "127.0.0.1"
    assert _refused("http://127.0.0.1?@good.com").category == "loopback"
    assert _refused("http://127.0.0.1/@good.com").category == "loopback"


def test_at_sign_in_path_is_fine() -> None:
    assert check_url("https://medium.com/@someone/post") is None


# --------------------------------------------------------------------------- malformed

MALFORMED_CASES = [
    "http://good.com\\@127.0.0.1/",
    "http:\\\\127.0.0.1/",
    "http:/\\127.0.0.1/",
    "http://127.0.0.1\\/",
    "http://example.com\\path",
    "http:example.com/",
    "http:/example.com/",
    "http:///example.com/",
    "http://",
    "http:///",
    "http://:80/",
    "http://./",
    "http://../",
    "http://example..com/",
    "http://.example.com/",
    "http://example.com../",
    "http://example.com:0/",
    "http://example.com:65536/",
    "http://example.com:99999999999/",
    "http://example.com:-1/",
    "http://example.com:+80/",
    "http://example.com:8o/",
    "http://example.com:/",
    "http://example.com:８０/",
    "http://example.com:80:80/",
    "http://[::1]:80:80/",
    "http://[::1]x/",
    "http://[::1/",
    "http://::1/",
    "http://example.com]/",
    "http://[example.com]/",
    "http://[127.0.0.1]/",
    "http://[::1%eth0]/",
    "http://[fe80::1%25]/",
    "http://[fe80::1%25eth%200]/",
    "http://[:::1]/",
    "http://[::ffff:0177.0.0.1]/",
    "http://[1::2::3]/",
    "http://[１::1]/",
    " http://example.com/",
    "http://example.com/ ",
    "http://exa mple.com/",
    "http://example.com/a b",
    "http://\texample.com/",
    "http://exam\nple.com/",
    "http://example.com\r\n/",
    "http://127.0.0.1\x00.example.com/",
    "http://example.com\x7f/",
    "http://example.com/\u00a0",
    "http://example.com\u3000/",
    "http://example.com/\u2028",
    "http://loc\u00adalhost/",  # soft hyphen: IDNA deletes it
    "http://local\u200bhost/",  # zero-width space
    "http://local\u200dhost/",  # zero-width joiner
    "http://local\u034fhost/",  # combining grapheme joiner (ignorable, category Mn)
    "http://localhost\ufe0f/",  # variation selector
    "http://localhost\U000e0100/",  # variation selector supplement
    "http://local\u3164host/",  # hangul filler (ignorable, category Lo)
    "http://\u202eexample.com/",  # bidi override
    "http://example.com%00/",
    "http://127.0.0.1%00.example.com/",
    "http://%zz.example.com/",
    "http://%4.example.com/",
    "http://%ff.example.com/",  # not utf-8
    "http://%2531%2532%2537.0.0.1/",  # double encoding is never decoded twice
    "http://exa%20mple.com/",
    "http://exa%2fmple.com/",
    "http://127.0.0.1%3a80/",
    "http://exa_mple%5c.com/",
    "http://ex*ample.com/",
    "http://exa!mple.com/",
    "http://exa'mple.com/",
    'http://exa"mple.com/',
    "http://exa<mple.com/",
    "http://exa{mple.com/",
    "http://exa|mple.com/",
    "http://exa^mple.com/",
    "http://exa`mple.com/",
    "http://exa$mple.com/",
    "http://exa&mple.com/",
    "http://exa(mple.com/",
    "http://exa,mple.com/",
    "http://exa;mple.com/",
    "http://exa=mple.com/",
    "http://exa+mple.com/",
    "http://exa~mple.com/",
    "http://℀.example.com/",  # NFKC turns this into "a/c"
    "http://example.com¨/",  # NFKC turns this into " ̈"
    "http://example.com：80/",  # fullwidth colon
    "http://example．com／/",  # fullwidth solidus
    "http://☃.example/",  # symbols are refused, not punycoded
    "http://\u0301abc.example/",  # label starting with a combining mark
    "http://xn--localhost-/",  # punycode that decodes to plain ascii
    "http://xn--zz-/",  # ditto
    "http://xn--/",
    "http://xn--a.example/",  # invalid punycode
    "http://xn--bcher-kva\u00e9.example/",
    "http://XN--BCHER-KVA.example./x",  # valid, checked below: not malformed
    "http://" + "a" * 64 + ".example.com/",
    "http://" + ".".join(["abcdefghi"] * 26) + "/",
]
MALFORMED_CASES.remove("http://XN--BCHER-KVA.example./x")

NUMERIC_MALFORMED_CASES = [
    "http://1.2.3.4.5/",
    "http://256.0.0.1/",
    "http://1.2.3.256/",
    "http://1.2.65536/",
    "http://1.16777216/",
    "http://4294967296/",
    "http://0x100000000/",
    "http://08.0.0.1/",
    "http://09/",
    "http://0x7g.0.0.1/",
    "http://127.0.0.1x/",
    "http://127.0.0.0x1g/",
    "http://127.0.0.1a/",
    "http://example.123/",
    "http://foo.0x7f/",
    "http://127..0.1/",
    "http://1e3/",
    "http://1.2.3.4.5./",
    "http://127.0.0.1../",
    "http://-1.0.0.1/",
    "http://+127.0.0.1/",
    "http://127.0.0.١/",  # arabic-indic digit: numeric-looking, not an ipv4 spelling
    "http://127.0.0.1.example.0/",
    "http://" + "0" * 300 + "/",
]


@pytest.mark.parametrize("url", MALFORMED_CASES + NUMERIC_MALFORMED_CASES)
def test_malformed_refused(url: str) -> None:
    violation = _refused(url)
    assert violation.category == "malformed", violation
    with pytest.raises(ValueError, match=r".") as info:
        parse_url(url)
    assert isinstance(info.value, UrlError)


def test_valid_uppercase_punycode_is_not_malformed() -> None:
    parsed = parse_url("http://XN--BCHER-KVA.example./x")
    assert parsed.host == "xn--bcher-kva.example"


# --------------------------------------------------------------------------- ipv4 spellings

IPV4_SPELLINGS = [
    ("127.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0X7F000001", "127.0.0.1"),
    ("0x7F.0.0.1", "127.0.0.1"),
    ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
    ("0x7f.0.0x0.1", "127.0.0.1"),
    ("0x00000000000007f.0.0.1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("0177.0000.0000.0001", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0177.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("127.65535", "127.0.255.255"),
    ("127.16777215", "127.255.255.255"),
    ("0x7f.1", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("127.1.", "127.0.0.1"),
    ("0127.0.0.1", "87.0.0.1"),  # octal: public, not loopback
    ("00.0.0.0", "0.0.0.0"),
    ("0", "0.0.0.0"),
    ("0x", "0.0.0.0"),
    ("0.0", "0.0.0.0"),
    ("10.1", "10.0.0.1"),
    ("012.1", "10.0.0.1"),
    ("0xa.1", "10.0.0.1"),
    ("167772161", "10.0.0.1"),
    ("4294967295", "255.255.255.255"),
    ("0xffffffff", "255.255.255.255"),
    ("037777777777", "255.255.255.255"),
    ("3232235521", "192.168.0.1"),
    ("0xc0.0xa8.0.1", "192.168.0.1"),
    ("192.168.1", "192.168.0.1"),
    ("0xa9fea9fe", "169.254.169.254"),
    ("2852039166", "169.254.169.254"),
    ("169.254.43518", "169.254.169.254"),
    ("0251.0376.0251.0376", "169.254.169.254"),
    ("１２７.０.０.１", "127.0.0.1"),  # fullwidth digits and dots
    ("１２７．０．０．１", "127.0.0.1"),
    ("127。0。0。1", "127.0.0.1"),  # ideographic full stop
    ("127｡0｡0｡1", "127.0.0.1"),  # halfwidth ideographic full stop
    ("𝟏𝟐𝟕.𝟎.𝟎.𝟏", "127.0.0.1"),  # mathematical bold digits
    ("①②⑦.⓪.⓪.①", "127.0.0.1"),  # circled digits
    ("%31%32%37.0.0.1", "127.0.0.1"),
    ("127%2e0%2e0%2e1", "127.0.0.1"),
    ("%30x7f000001", "127.0.0.1"),
    ("93.184.216.34", "93.184.216.34"),
    ("8.8.8.8", "8.8.8.8"),
    ("134744072", "8.8.8.8"),
]


@pytest.mark.parametrize(("host", "expected"), IPV4_SPELLINGS)
def test_ipv4_spellings(host: str, expected: str) -> None:
    parsed = parse_url(f"http://{host}/")
    assert parsed.ip == IPv4Address(expected)
    assert parsed.host == expected


def _spellings(ip: IPv4Address, rng: random.Random) -> list[str]:
    octets = list(ip.packed)
    value = int(ip)

    def part(n: int) -> str:
        return rng.choice([str(n), hex(n), "0" + oct(n)[2:], f"0x{n:08X}"])

    return [
        str(value),
        hex(value),
        "0" + oct(value)[2:],
        ".".join(part(o) for o in octets),
        f"{part(octets[0])}.{part((octets[1] << 16) | (octets[2] << 8) | octets[3])}",
        f"{part(octets[0])}.{part(octets[1])}.{part((octets[2] << 8) | octets[3])}",
        str(ip) + ".",
    ]


def test_ipv4_spellings_round_trip() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        ip = IPv4Address(rng.getrandbits(32))
        for spelling in _spellings(ip, rng):
            assert parse_url(f"http://{spelling}/").ip == ip, spelling
            expected = classify_ip(ip)
            violation = check_url(f"http://{spelling}/")
            assert (violation and violation.category) == expected, spelling


# --------------------------------------------------------------------------- refused addresses

ADDRESS_CASES = [
    # loopback
    ("http://127.0.0.1/", "loopback"),
    ("http://127.255.255.254/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://127.0.1/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://0x7F.0.0.1/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://0x7f.0.0x0.1/", "loopback"),
    ("http://127.0.0.1./", "loopback"),
    ("http://１２７.０.０.１/", "loopback"),
    ("http://127。0。0。1/", "loopback"),
    ("http://%31%32%37.0.0.1/", "loopback"),
    ("http://127.0.0.1:8080/admin", "loopback"),
    ("https://127.0.0.1:443/", "loopback"),
    ("http://127.0.0.1#@good.com", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::1]:8080/", "loopback"),
    ("http://[0:0:0:0:0:0:0:1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::FFFF:127.0.0.1]/", "loopback"),
    ("http://[::ffff:7f00:1]/", "loopback"),
    ("http://[0:0:0:0:0:ffff:7f00:0001]/", "loopback"),
    ("http://[::127.0.0.1]/", "loopback"),
    ("http://[::7f00:1]/", "loopback"),
    ("http://[2002:7f00:1::]/", "loopback"),
    ("http://[2002:7f00:0001::1]/", "loopback"),
    ("http://[64:ff9b::7f00:1]/", "loopback"),
    ("http://[64:ff9b::127.0.0.1]/", "loopback"),
    # private
    ("http://10.0.0.1/", "private"),
    ("http://10.1/", "private"),
    ("http://012.0.0.1/", "private"),
    ("http://167772161/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.255/", "private"),
    ("http://192.168.0.1/", "private"),
    ("http://192.168.1/", "private"),
    ("http://0xc0a80001/", "private"),
    ("http://[fc00::1]/", "private"),
    ("http://[fd12:3456:789a::1]/", "private"),
    ("http://[fec0::1]/", "private"),  # deprecated site-local
    ("http://[64:ff9b:1::a00:1]/", "private"),  # local-use NAT64
    ("http://[2002:0a00:0001::]/", "private"),
    ("http://[2002:c0a8:1::]/", "private"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[::ffff:192.168.0.1]/", "private"),
    ("http://[64:ff9b::10.0.0.1]/", "private"),
    # link-local
    ("http://169.254.0.1/", "link-local"),
    ("http://169.254.255.254/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://[FE80::1%25en0]:8080/", "link-local"),
    ("http://[febf::1]/", "link-local"),
    ("http://[::ffff:169.254.0.1]/", "link-local"),
    # cgnat
    ("http://100.64.0.1/", "cgnat"),
    ("http://100.127.255.254/", "cgnat"),
    ("http://[::ffff:100.64.0.1]/", "cgnat"),
    # multicast
    ("http://224.0.0.1/", "multicast"),
    ("http://239.255.255.250/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://[ff05::1:3]/", "multicast"),
    # unspecified
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://0x0/", "unspecified"),
    ("http://00/", "unspecified"),
    ("http://0.0.0.0:8080/", "unspecified"),
    ("http://0.1.2.3/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://[0:0:0:0:0:0:0:0]/", "unspecified"),
    ("http://[::ffff:0.0.0.0]/", "unspecified"),
    # reserved
    ("http://240.0.0.1/", "reserved"),
    ("http://255.255.255.255/", "reserved"),
    ("http://4294967295/", "reserved"),
    ("http://192.0.0.1/", "reserved"),
    ("http://192.0.0.170/", "reserved"),
    ("http://192.0.2.1/", "reserved"),
    ("http://198.51.100.1/", "reserved"),
    ("http://203.0.113.1/", "reserved"),
    ("http://198.18.0.1/", "reserved"),
    ("http://198.19.255.255/", "reserved"),
    ("http://192.88.99.1/", "reserved"),
    ("http://[2001:0::1]/", "reserved"),  # Teredo
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "reserved"),
    ("http://[2001:db8::1]/", "reserved"),
    ("http://[3fff::1]/", "reserved"),
    ("http://[2001:2::1]/", "reserved"),
    ("http://[100::1]/", "reserved"),
    ("http://[::8.8.8.8]/", "reserved"),  # deprecated IPv4-compatible
    ("http://[::ffff:0:808:808]/", "reserved"),  # SIIT, outside 2000::/3
    ("http://[4000::1]/", "reserved"),
    ("http://[::2]/", "unspecified"),  # compat form of 0.0.0.2
    ("http://[::ffff:240.0.0.1]/", "reserved"),
    # cloud metadata, even where another rule matches too
    ("http://169.254.169.254/", "metadata"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://0xa9fea9fe/", "metadata"),
    ("http://2852039166/", "metadata"),
    ("http://169.254.43518/", "metadata"),
    ("http://0251.0376.0251.0376/", "metadata"),
    ("http://169.254.170.2/v2/credentials", "metadata"),
    ("http://169.254.169.123/", "metadata"),
    ("http://100.100.100.200/latest/meta-data/", "metadata"),
    ("http://192.0.0.192/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://[FD00:0EC2:0000::0254]/", "metadata"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[::ffff:a9fe:a9fe]/", "metadata"),
    ("http://[64:ff9b::169.254.169.254]/", "metadata"),
    ("http://[2002:a9fe:a9fe::]/", "metadata"),
    ("http://metadata/", "metadata"),
    ("http://METADATA/", "metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("http://metadata.google.internal./", "metadata"),
    ("http://Metadata.Google.Internal/", "metadata"),
    ("http://metadata.goog/", "metadata"),
    ("http://instance-data/", "metadata"),
    ("http://instance-data.ec2.internal/", "metadata"),
    ("http://anything.internal/", "metadata"),
    ("http://internal/", "metadata"),
    ("http://ｍｅｔａｄａｔａ.google.internal/", "metadata"),
    ("http://%6d%65%74%61%64%61%74%61/", "metadata"),
    # localhost names
    ("http://localhost/", "localhost-name"),
    ("http://localhost./", "localhost-name"),
    ("http://LOCALHOST/", "localhost-name"),
    ("http://LocalHost:8080/", "localhost-name"),
    ("http://foo.localhost/", "localhost-name"),
    ("http://a.b.localhost./", "localhost-name"),
    ("http://localhost.localdomain/", "localhost-name"),
    ("http://ip6-localhost/", "localhost-name"),
    ("http://ip6-loopback/", "localhost-name"),
    ("http://localhost6/", "localhost-name"),
    ("http://ｌｏｃａｌｈｏｓｔ/", "localhost-name"),
    ("http://%6c%6f%63%61%6c%68%6f%73%74/", "localhost-name"),
    ("http://%4C%4F%43%41%4C%48%4F%53%54/", "localhost-name"),
    ("http://ℓocalhost/", "localhost-name"),  # script small l (NFKC: "l")
    ("http://localhost%2e/", "localhost-name"),
]


@pytest.mark.parametrize(("url", "category"), ADDRESS_CASES)
def test_address_refused(url: str, category: str) -> None:
    violation = _refused(url)
    assert violation.category == category, violation
    assert violation.host is not None


def test_localhost_lookalikes_are_public_names() -> None:
    for url in ("http://localhost.example.com/", "http://mylocalhost/", "http://localhostx/"):
        assert check_url(url) is None, url
    for url in ("http://internal.example.com/", "http://metadata.example.com/"):
        assert check_url(url) is None, url


# --------------------------------------------------------------------------- allowed

PUBLIC_CASES = [
    "https://api.example.com/x",
    "http://93.184.216.34/",
    "https://[2606:2800:220:1:248:1893:25c8:1946]/",
    "http://8.8.8.8:8080/",
    "http://8.8.8.8:65535/",
    "http://8.8.8.8:1/",
    "https://bücher.example/",
    "https://BÜCHER.example/",
    "https://xn--bcher-kva.example/",
    "https://例え.テスト/",
    "https://пример.испытание/path?q=1",
    "http://0127.0.0.1/",  # octal 87.0.0.1
    "http://134744072/",
    "http://[::ffff:8.8.8.8]/",
    "http://[64:ff9b::8.8.8.8]/",
    "http://[2002:808:808::1]/",
    "http://[2001:4860:4860::8888]/",
    "http://example.com/a\\b",  # a backslash in the path cannot move the host
    "http://example.com?x=@127.0.0.1",
    "http://example.com#@127.0.0.1",
    "http://under_score.example.com/",
    "http://a-b.example.com./",
    "http://123abc.example.com/",
    "http://1.2.3.4.nip.io/",  # a DNS name: the connect-time check sees what it resolves to
    "http://example.com:080/",
    "http://100.63.255.255/",
    "http://100.128.0.0/",
    "http://172.15.255.255/",
    "http://172.32.0.0/",
    "http://169.253.255.255/",
    "http://223.255.255.255/",
    "http://11.0.0.0/",
    "http://1.1.1.1/",
    "http://example.com/%7Euser/ümlaut",
]


@pytest.mark.parametrize("url", PUBLIC_CASES)
def test_public_allowed(url: str) -> None:
    assert check_url(url) is None


# --------------------------------------------------------------------------- parse_url

PARSE_CASES: list[tuple[str, ParsedUrl]] = [
    (
        "HTTP://Example.COM./a/b?x=1&y=2#frag",
        ParsedUrl("http", "example.com", 80, "/a/b", None, "x=1&y=2"),
    ),
    ("https://example.com", ParsedUrl("https", "example.com", 443, "/", None)),
    ("https://example.com?q", ParsedUrl("https", "example.com", 443, "/", None, "q")),
    ("https://example.com#f", ParsedUrl("https", "example.com", 443, "/", None)),
    ("http://example.com:8080/", ParsedUrl("http", "example.com", 8080, "/", None)),
    ("http://example.com:00080/", ParsedUrl("http", "example.com", 80, "/", None)),
    ("ws://example.com/s", ParsedUrl("ws", "example.com", 80, "/s", None)),
    ("wss://example.com/s", ParsedUrl("wss", "example.com", 443, "/s", None)),
    ("gopher://example.com:70/x", ParsedUrl("gopher", "example.com", 70, "/x", None)),
    (
        "https://bücher.example/",
        ParsedUrl("https", "xn--bcher-kva.example", 443, "/", None),
    ),
    (
        "https://ＢÜＣＨＥＲ．example/",
        ParsedUrl("https", "xn--bcher-kva.example", 443, "/", None),
    ),
    (
        "https://faß.de/",
        ParsedUrl("https", "xn--fa-hia.de", 443, "/", None),  # non-transitional, like browsers
    ),
    (
        "http://0x7f000001:81/x",
        ParsedUrl("http", "127.0.0.1", 81, "/x", IPv4Address("127.0.0.1")),
    ),
    ("http://[::1]/", ParsedUrl("http", "::1", 80, "/", IPv6Address("::1"))),
    (
        "http://[2001:DB8:0:0::1]:8443/",
        ParsedUrl("http", "2001:db8::1", 8443, "/", IPv6Address("2001:db8::1")),
    ),
    (
        "http://[::ffff:127.0.0.1]/",
        ParsedUrl("http", "::ffff:7f00:1", 80, "/", IPv6Address("::ffff:127.0.0.1")),
    ),
    (
        "http://[fe80::1%25eth0]/",
        ParsedUrl("http", "fe80::1%eth0", 80, "/", IPv6Address("fe80::1")),
    ),
    ("http://a.b.c/%2e%2e/", ParsedUrl("http", "a.b.c", 80, "/%2e%2e/", None)),
    ("http://%61%62.com/", ParsedUrl("http", "ab.com", 80, "/", None)),
]


@pytest.mark.parametrize(("url", "expected"), PARSE_CASES)
def test_parse_url_normalizes(url: str, expected: ParsedUrl) -> None:
    assert parse_url(url) == expected


def test_parse_url_needs_port_for_unknown_schemes() -> None:
    with pytest.raises(ValueError, match="no default port"):
        parse_url("gopher://example.com/")


def test_parse_url_errors_carry_a_category() -> None:
    with pytest.raises(UrlError, match="user-info") as info:
        parse_url("http://u@example.com/")
    assert info.value.category == "userinfo"
    with pytest.raises(UrlError, match="no scheme") as info:
        parse_url("//example.com/")
    assert info.value.category == "scheme"


def test_parse_url_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="string"):
        parse_url(b"http://example.com/")  # type: ignore[arg-type]
    violation = check_url(None)  # type: ignore[arg-type]
    assert violation is not None
    assert violation.category == "malformed"


# --------------------------------------------------------------------------- classify_ip

CLASSIFY_CASES = [
    ("127.0.0.1", "loopback"),
    ("10.255.255.255", "private"),
    ("172.16.0.0", "private"),
    ("192.168.255.255", "private"),
    ("169.254.1.1", "link-local"),
    ("100.64.0.0", "cgnat"),
    ("224.0.0.0", "multicast"),
    ("239.0.0.1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("0.255.255.255", "unspecified"),
    ("240.0.0.0", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.1", "reserved"),
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("100.100.100.200", "metadata"),
    ("192.0.0.192", "metadata"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fd00:ec2::254", "metadata"),
    ("fd00:ec2::253", "private"),
    ("fe80::1%eth0", "link-local"),
    ("ff02::2", "multicast"),
    ("2001::1", "reserved"),
    ("2002:7f00:1::", "loopback"),
    ("64:ff9b::a9fe:a9fe", "metadata"),
    ("8.8.8.8", None),
    ("93.184.216.34", None),
    ("2606:4700::1111", None),
    ("::ffff:1.1.1.1", None),
]


@pytest.mark.parametrize(("addr", "category"), CLASSIFY_CASES)
def test_classify_ip(addr: str, category: str | None) -> None:
    assert classify_ip(ip_address(addr)) == category


def test_classify_ip_rejects_strings() -> None:
    with pytest.raises(TypeError):
        classify_ip("127.0.0.1")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- allowlist

ALLOW_CASES = [
    # (allow_hosts, url, refused?)
    (("api.internal",), "http://api.internal/", False),
    (("API.Internal.",), "http://api.internal./x", False),
    (("api.internal",), "http://API.INTERNAL/", False),
    (("api.internal",), "http://other.internal/", True),
    (("api.internal",), "http://x.api.internal/", True),
    (("*.svc.cluster.local",), "http://db.ns.svc.cluster.local/", False),
    (("*.svc.cluster.local",), "http://svc.cluster.local/", False),  # public name, not opened
    (("*.localhost",), "http://app.localhost/", False),
    (("*.localhost",), "http://localhost/", True),
    (("localhost",), "http://localhost:3000/", False),
    (("localhost",), "http://127.0.0.1/", True),
    (("127.0.0.1",), "http://127.0.0.1/", False),
    (("127.0.0.1",), "http://0x7f000001/", False),
    (("127.0.0.1",), "http://2130706433:8080/", False),
    (("127.0.0.1",), "http://127.1/", False),
    (("127.0.0.1",), "http://１２７.０.０.１/", False),
    (("127.0.0.1",), "http://127.0.0.2/", True),
    (("127.0.0.1",), "http://localhost/", True),
    (("127.0.0.1",), "http://[::1]/", True),
    (("0x7f000001",), "http://127.0.0.1/", False),
    (("::1",), "http://[::1]/", False),
    (("::1",), "http://[0:0::1]:9000/", False),
    (("[::1]",), "http://[::1]/", False),
    (("[::1]:8080",), "http://[::1]:8080/", False),
    (("[::1]:8080",), "http://[::1]:8081/", True),
    (("[::1]:8080",), "http://[::1]/", True),
    (("127.0.0.1:8080",), "http://127.0.0.1:8080/", False),
    (("127.0.0.1:8080",), "http://127.0.0.1/", True),
    (("api.internal:8443",), "https://api.internal:8443/", False),
    (("api.internal:8443",), "https://api.internal/", True),
    (("*.svc.cluster.local:80",), "http://a.svc.cluster.local/", False),
    (("*.svc.cluster.local:80",), "https://a.svc.cluster.local/", False),  # public name
    (("10.0.0.0/8",), "http://10.1.2.3/", False),
    (("10.0.0.0/8",), "http://10.1/", False),
    (("10.0.0.0/8",), "http://11.0.0.1/", False),  # public anyway
    (("10.0.0.0/8",), "http://192.168.0.1/", True),
    (("10.0.0.0/8:443",), "https://10.0.0.1/", False),
    (("10.0.0.0/8:443",), "http://10.0.0.1/", True),
    (("fd00::/8",), "http://[fd12::1]/", False),
    (("fd00::/8",), "http://[fc00::1]/", True),
    (("[fd00::/8]:443",), "https://[fd12::1]/", False),
    (("[fd00::/8]:443",), "http://[fd12::1]/", True),
    (("0.0.0.0/0",), "http://0.0.0.1/", False),
    (("::/0",), "http://127.0.0.1/", True),  # an IPv6 net never matches IPv4
    (("0.0.0.0/0",), "http://[::1]/", True),
    (("127.0.0.1",), "http://[::ffff:127.0.0.1]/", True),  # embedded forms are not the literal
    (("169.254.169.254",), "http://169.254.169.254/", False),
    (("169.254.0.0/16",), "http://169.254.169.254/", False),
    (("metadata.google.internal",), "http://metadata.google.internal/", False),
    (("fe80::1",), "http://[fe80::1%25eth0]/", False),
    (("bücher.example",), "http://xn--bcher-kva.example/", False),
]


@pytest.mark.parametrize(("allow", "url", "refused"), ALLOW_CASES)
def test_allowlist(allow: tuple[str, ...], url: str, refused: bool) -> None:
    policy = SsrfPolicy(allow_hosts=allow)
    assert (check_url(url, policy) is not None) == refused
    assert check_url(url, DEFAULT_POLICY) is not None or not refused


def test_allowlist_by_address_opens_any_spelling() -> None:
    policy = SsrfPolicy(allow_hosts=("127.0.0.1",))
    for spelling in ("127.0.0.1", "0x7f000001", "0177.0.0.1", "2130706433", "127.1"):
        assert check_url(f"http://{spelling}/", policy) is None, spelling


# --------------------------------------------------------------------------- check_address

CHECK_ADDRESS_CASES: list[tuple[str | IPv4Address | IPv6Address, str | None]] = [
    ("127.0.0.1", "loopback"),
    (IPv4Address("127.0.0.1"), "loopback"),
    ("::1", "loopback"),
    (IPv6Address("::ffff:127.0.0.1"), "loopback"),
    ("10.0.0.1", "private"),
    ("169.254.169.254", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("fe80::1%eth0", "link-local"),
    ("100.64.1.1", "cgnat"),
    ("0.0.0.0", "unspecified"),
    ("8.8.8.8", None),
    (IPv6Address("2606:4700::1111"), None),
    ("0x7f000001", "malformed"),  # resolvers never return odd spellings
    ("127.1", "malformed"),
    ("0127.0.0.1", "malformed"),
    ("[::1]", "malformed"),
    ("", "malformed"),
    (" 8.8.8.8", "malformed"),
    ("example.com", "malformed"),
]


@pytest.mark.parametrize(("addr", "category"), CHECK_ADDRESS_CASES)
def test_check_address(addr: str | IPv4Address | IPv6Address, category: str | None) -> None:
    violation = check_address(addr)
    assert (violation and violation.category) == category


def test_check_address_rejects_non_addresses() -> None:
    violation = check_address(2130706433)  # type: ignore[arg-type]
    assert violation is not None
    assert violation.category == "malformed"


def test_check_address_allowlist_by_name() -> None:
    policy = SsrfPolicy(allow_hosts=("api.internal", "*.svc.cluster.local:8080"))
    assert check_address("10.0.0.5", policy, host="api.internal", port=443) is None
    assert check_address("10.0.0.5", policy, host="API.internal.", port=443) is None
    assert check_address("10.0.0.5", policy, host="db.svc.cluster.local", port=8080) is None
    violation = check_address("10.0.0.5", policy, host="db.svc.cluster.local", port=80)
    assert violation is not None
    assert violation.category == "private"
    assert violation.host == "db.svc.cluster.local"
    assert "resolved to" in violation.message
    violation = check_address("10.0.0.5", policy, host="db.svc.cluster.local")
    assert violation is not None, "a port-restricted entry needs the port"
    assert check_address("10.0.0.5", policy, host="evil.example") is not None
    assert check_address("10.0.0.5", policy) is not None
    assert check_address("10.0.0.5", policy, host="bad host") is not None


def test_check_address_allowlist_by_address() -> None:
    policy = SsrfPolicy(allow_hosts=("10.0.0.0/8", "[::1]:8080"))
    assert check_address("10.9.9.9", policy) is None
    assert check_address("10.9.9.9", policy, host="anything.example") is None
    assert check_address("::1", policy, port=8080) is None
    assert check_address("::1", policy, port=8081) is not None
    assert check_address("::1", policy) is not None


def test_names_never_open_metadata_addresses() -> None:
    policy = SsrfPolicy(allow_hosts=("*.example.com", "metadata.google.internal"))
    for host in ("rebound.example.com", "metadata.google.internal"):
        violation = check_address("169.254.169.254", policy, host=host)
        assert violation is not None
        assert violation.category == "metadata"
    # The private, non-metadata part of the range is still opened by name.
    assert check_address("169.254.1.1", policy, host="x.example.com") is None
    opened = SsrfPolicy(allow_hosts=("169.254.169.254",))
    assert check_address("169.254.169.254", opened, host="metadata.google.internal") is None


# --------------------------------------------------------------------------- messages


ALL_REFUSED = (
    SCHEME_CASES
    + USERINFO_CASES
    + MALFORMED_CASES
    + NUMERIC_MALFORMED_CASES
    + [url for url, _ in ADDRESS_CASES]
)


@pytest.mark.parametrize("url", ALL_REFUSED)
def test_violation_shape(url: str) -> None:
    violation = _refused(url)
    assert violation.category in CATEGORIES
    assert violation.message == violation.message.lower()
    assert not violation.message.endswith(".")
    assert violation.message


def test_message_names_the_spelling_and_the_address() -> None:
    violation = _refused("http://0x7f000001/")
    assert violation.message == 'host "0x7f000001" is the loopback address 127.0.0.1'
    assert violation.host == "127.0.0.1"
    violation = _refused("http://[::ffff:169.254.169.254]/")
    assert "169.254.169.254" in violation.message
    assert violation.category == "metadata"


def test_message_has_no_raw_control_characters() -> None:
    violation = _refused("http://exa\tmple.com/")
    assert "\t" not in violation.message
    assert "u+0009" in violation.message


# --------------------------------------------------------------------------- policy


def test_default_policy() -> None:
    assert DEFAULT_POLICY == SsrfPolicy()
    assert DEFAULT_POLICY.allow_hosts == ()
    assert DEFAULT_POLICY.allowed_schemes == ("http", "https")


def test_from_json() -> None:
    policy = SsrfPolicy.from_json(
        {"allow_hosts": ["api.internal", "10.0.0.0/8", "[::1]:8080"], "allowed_schemes": ["https"]}
    )
    assert policy == SsrfPolicy(("api.internal", "10.0.0.0/8", "[::1]:8080"), ("https",))
    assert SsrfPolicy.from_json({}) == DEFAULT_POLICY
    assert SsrfPolicy.from_json({"allow_hosts": []}) == DEFAULT_POLICY
    assert hash(policy) == hash(SsrfPolicy(policy.allow_hosts, policy.allowed_schemes))


FROM_JSON_ERRORS: list[tuple[object, str]] = [
    (None, "must be a json object, got null"),
    ([], "must be a json object, got array"),
    ("allow_hosts", "must be a json object, got string"),
    ({"allow_host": []}, "unknown ssrf policy keys 'allow_host'"),
    ({"allow_hosts": [], "extra": 1, "x": 2}, "unknown ssrf policy keys 'extra', 'x'"),
    ({1: []}, "unknown ssrf policy keys 1"),
    ({"allow_hosts": "api.internal"}, '"allow_hosts" must be an array of strings, got string'),
    ({"allow_hosts": None}, "got null"),
    ({"allow_hosts": {"a": 1}}, "got object"),
    ({"allow_hosts": ["a", 1]}, r'"allow_hosts"\[1\] must be a string, got number'),
    ({"allow_hosts": [True]}, "got boolean"),
    ({"allowed_schemes": "https"}, "must be an array of strings"),
    ({"allowed_schemes": ["https", None]}, "must be a string, got null"),
    ({"allowed_schemes": ["gopher"]}, 'allowed_schemes entry "gopher" is not one of'),
    ({"allowed_schemes": ["file"]}, "is not one of"),
    ({"allowed_schemes": [""]}, "is not one of"),
    ({"allow_hosts": ["10.0.0.1/8"]}, "not a valid cidr: 10.0.0.1/8 has host bits set"),
    ({"allow_hosts": ["10.0.0.0/33"]}, "not a valid cidr"),
    ({"allow_hosts": ["10.0.0.0/"]}, "not a valid cidr"),
    ({"allow_hosts": ["10.0.0/8"]}, "not a valid cidr"),
    ({"allow_hosts": ["fd00::1/8"]}, "not a valid cidr"),
    ({"allow_hosts": ["example.com/8"]}, "not a valid cidr"),
    ({"allow_hosts": [""]}, "entry is empty"),
    ({"allow_hosts": ["api.internal:0"]}, "bad port"),
    ({"allow_hosts": ["api.internal:65536"]}, "bad port"),
    ({"allow_hosts": ["api.internal:http"]}, "bad port"),
    ({"allow_hosts": ["api.internal:"]}, "bad port"),
    ({"allow_hosts": ["[::1]:x"]}, "bad port"),
    ({"allow_hosts": ["[::1"]}, "brackets must hold an ipv6 address"),
    ({"allow_hosts": ["[example.com]"]}, "brackets must hold an ipv6 address"),
    ({"allow_hosts": ["[::1]x"]}, "brackets must hold an ipv6 address"),
    ({"allow_hosts": ["::1::2"]}, "not an ipv6 address"),
    ({"allow_hosts": ["fe80::1%eth0"]}, "bad zone id"),
    ({"allow_hosts": ["*"]}, "not allowed in a host name"),
    ({"allow_hosts": ["*."]}, "empty host"),
    ({"allow_hosts": ["a.*.example"]}, "not allowed in a host name"),
    ({"allow_hosts": ["*.127.0.0.1"]}, '"\\*." may only prefix a domain name'),
    ({"allow_hosts": ["api .internal"]}, "u\\+0020"),
    ({"allow_hosts": ["api.internal\n"]}, "u\\+000a"),
    ({"allow_hosts": ["user@api.internal"]}, "user-info"),
    ({"allow_hosts": ["http://api.internal/"]}, "bad port"),
    ({"allow_hosts": ["1.2.3.4.5"]}, "more than four parts"),
]


@pytest.mark.parametrize(("obj", "message"), FROM_JSON_ERRORS)
def test_from_json_errors(obj: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SsrfPolicy.from_json(obj)


def test_constructor_validates_too() -> None:
    with pytest.raises(ValueError, match="must be a tuple"):
        SsrfPolicy(allow_hosts=["api.internal"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be a tuple"):
        SsrfPolicy(allowed_schemes="https")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a valid cidr"):
        SsrfPolicy(allow_hosts=("10.0.0.1/8",))


def test_policy_is_frozen() -> None:
    policy = SsrfPolicy()
    with pytest.raises(AttributeError):
        policy.allow_hosts = ("x",)  # type: ignore[misc]
