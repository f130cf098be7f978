"""The ``http`` node executor: an HTTP client that re-checks every connection against SSRF.

The compiler refuses static URLs that target private, loopback or metadata addresses, but a URL
rendered at run time, a DNS name that points at a private address, DNS rebinding and redirects
all get past a compile-time check. So the client checks again where it matters:

* each URL (the first and every redirect ``Location``) with :func:`aobc.security.ssrf.check_url`,
  and the connection is made to the canonical host that check parsed;
* at connect time the network backend resolves the host once, checks every address with
  :func:`aobc.security.ssrf.check_address` and connects to a checked address, never to the name,
  so a second, rebound DNS answer is never used. Host header, TLS SNI and certificate
  verification stay on the original name.

No proxy is ever used (``trust_env=False``) and no cookie is ever stored: a proxy would connect
on our behalf to an unchecked address, and a cookie jar would leak state between workflow runs.

Retry rule (``RetryPolicy.max_attempts`` counts every attempt, the first included): an attempt
that failed with a connection error, a timeout or status 408, 425, 429, 500, 502, 503 or 504 is
retried when repeating it is safe, that is when the method is GET, HEAD, OPTIONS, PUT or DELETE,
or the node is not ``effectful``, or an ``Idempotency-Key`` is sent. A failure to connect at all
(DNS, TCP or TLS) is retried whatever the method, since the request never left. SSRF refusals,
invalid requests, missing secrets, oversized responses and redirect loops are never retried.
The wait before retry ``k`` (0-based) is ``Retry-After`` when the response has one, else
``uniform(0, min(max_backoff, backoff * multiplier**k))``; both are capped at ``max_backoff``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import re
import socket
import ssl
import time
import tomllib
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC
from http.cookiejar import CookieJar, DefaultCookiePolicy
from ipaddress import ip_address
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import quote

import httpcore
import httpx

from aobc.ir import RetryPolicy, thaw
from aobc.security.ssrf import (
    DEFAULT_POLICY,
    ParsedUrl,
    SsrfPolicy,
    SsrfViolation,
    check_address,
    check_url,
    parse_url,
)

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "RETRY_STATUSES",
    "HttpClient",
    "HttpError",
    "HttpErrorKind",
    "HttpRequest",
    "HttpResponse",
    "Resolver",
    "SecretError",
    "Secrets",
]

HttpErrorKind: TypeAlias = Literal[
    "ssrf", "timeout", "connect", "status", "too-large", "redirects", "secret", "invalid"
]
Resolver: TypeAlias = Callable[[str, int], Awaitable[Sequence[str]]]
Sleep: TypeAlias = Callable[[float], Awaitable[None]]

DEFAULT_MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024
RETRY_STATUSES: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
# Methods that RFC 9110 defines as idempotent, so repeating them is safe whatever the node.
_REPEATABLE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_KEYED_METHODS: Final = frozenset({"POST", "PATCH"})
_EFFECTS: Final = frozenset({"pure", "idempotent", "effectful"})
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
# Headers the client computes itself: a caller's copy could smuggle a second request
# (length/encoding) or send the request to another virtual host than the one checked.
_MANAGED_HEADERS: Final = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"}
)
# Headers that carry credentials: redacted in any repr, dropped on cross-origin redirects.
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_SECRET_CHARS: Final = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_ASCII_SAFE: Final = "".join(map(chr, range(0x21, 0x7F)))  # quote() leaves these alone
_REDACTED: Final = "[redacted]"
_DEFAULT_TIMEOUT_MS: Final = 30_000
_USER_AGENT: Final = "aobc-runtime"


# --------------------------------------------------------------------------- secrets


class SecretError(LookupError):
    """A secret that is missing or unusable; the message names it, never its value."""


class Secrets:
    """Resolves secret names: ``AOBC_SECRET_<NAME>`` in the environment, then a secrets file.

    ``<NAME>`` is the name upper-cased with every character other than a letter or digit
    turned into ``_`` (``github-token`` -> ``AOBC_SECRET_GITHUB_TOKEN``). The file is a flat
    JSON object, or a TOML table when its name ends in ``.toml``, mapping names to strings.
    """

    def __init__(
        self,
        file: str | os.PathLike[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._path = None if file is None else Path(file)
        self._values: dict[str, str] = {} if self._path is None else _load_secrets(self._path)

    def __repr__(self) -> str:
        return f"Secrets(file={None if self._path is None else str(self._path)!r})"

    @staticmethod
    def env_name(name: str) -> str:
        """The environment variable that holds secret ``name``."""
        return "AOBC_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()

    def get(self, name: str) -> str:
        """The value of secret ``name``; raise :class:`SecretError` if it is not set."""
        variable = self.env_name(name)
        value = self._environ.get(variable)
        if value is None:
            value = self._values.get(name)
        if value is None:
            where = f"environment variable {variable}"
            where += (
                " (no secrets file configured)"
                if self._path is None
                else f" and secrets file {self._path}"
            )
            raise SecretError(f'secret "{name}" is not set: looked in {where}')
        if not value:
            raise SecretError(f'secret "{name}" is empty')
        return value


def _load_secrets(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"cannot read secrets file {path}: {_reason(exc)}") from None
    try:
        data: object = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError; neither quotes the text
        raise SecretError(f"secrets file {path} is not valid: {_reason(exc)}") from None
    if not isinstance(data, dict):
        raise SecretError(f"secrets file {path} must hold a map of names to strings")
    for key, value in data.items():
        if not isinstance(value, str):
            raise SecretError(f'secrets file {path}: secret "{key}" must be a string')
    return dict(data)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, repr=False)
class HttpRequest:
    """One request as the engine rendered it; ``auth`` names a secret, never holds one."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    timeout_ms: int | None = None
    auth: str | None = None

    def __repr__(self) -> str:
        headers = {
            k: _REDACTED if k.lower() in _CREDENTIAL_HEADERS else v for k, v in self.headers.items()
        }
        return (
            f"HttpRequest(method={self.method!r}, url={self.url!r}, headers={headers!r}, "
            f"body={self.body!r}, timeout_ms={self.timeout_ms!r}, auth={self.auth!r})"
        )


@dataclass(frozen=True)
class HttpResponse:
    """A final (non-redirect) response; ``headers`` has lower-case names."""

    status: int
    headers: dict[str, str]
    body: Any
    url: str

    def to_output(self) -> dict[str, Any]:
        """The ``http`` node's output value."""
        return {
            "status": self.status,
            "headers": dict(self.headers),
            "body": self.body,
            "url": self.url,
        }


class HttpError(Exception):
    """Why an ``http`` node failed. ``kind`` is one of :data:`HttpErrorKind`.

    ``attempts`` counts the attempts made (0 when the request was refused before any);
    ``status`` and ``response`` are set for a ``"status"`` error (a final non-2xx response).
    """

    def __init__(
        self,
        kind: HttpErrorKind,
        message: str,
        *,
        status: int | None = None,
        response: HttpResponse | None = None,
        attempts: int = 0,
        retry_after: float | None = None,
        unsent: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind: HttpErrorKind = kind
        self.message = message
        self.status = status
        self.response = response
        self.attempts = attempts
        self.retry_after = retry_after  # seconds the server asked us to wait, if it did
        self.unsent = unsent  # True when the request certainly never reached the server

    def __repr__(self) -> str:
        return (
            f"HttpError(kind={self.kind!r}, status={self.status!r}, "
            f"attempts={self.attempts!r}, message={self.message!r})"
        )


# --------------------------------------------------------------------------- connecting


class _Refused(Exception):
    """Raised by the network backend when an address fails the SSRF check."""

    def __init__(self, violation: SsrfViolation) -> None:
        super().__init__(violation.message)
        self.violation = violation


async def _system_resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, checks every address, and connects only to a checked address."""

    def __init__(self, policy: SsrfPolicy, resolve: Resolver) -> None:
        self._policy = policy
        self._resolve = resolve
        self._inner = httpcore.AnyIOBackend()

    async def _addresses(self, host: str, port: int) -> list[str]:
        try:
            ip_address(host)
        except ValueError:
            pass
        else:
            return [host]  # an IP literal: nothing to resolve
        try:
            answers = list(await self._resolve(host, port))
        except OSError as exc:
            raise httpcore.ConnectError(f'cannot resolve host "{host}": {_reason(exc)}') from exc
        if not answers:
            raise httpcore.ConnectError(f'host "{host}" resolved to no address')
        return answers

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._addresses(host, port)
        # Refuse when any answer is forbidden, not just skip it: a name that mixes public and
        # private answers is a misconfiguration or an attack, and the error should say so.
        for address in addresses:
            violation = check_address(address, self._policy, host=host, port=port)
            if violation is not None:
                raise _Refused(violation)
        error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise _Refused(SsrfViolation("scheme", "unix sockets are not allowed", None))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# httpcore's exceptions, most specific first, mapped to httpx's so callers see one family.
_CORE_ERRORS: Final[tuple[tuple[type[Exception], type[httpx.TransportError]], ...]] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


def _to_httpx_error(exc: Exception) -> Exception:
    for core, mapped in _CORE_ERRORS:
        if isinstance(exc, core):
            return mapped(str(exc))
    return exc


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except Exception as exc:
            mapped = _to_httpx_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class _GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore pool that connects through :class:`_GuardedBackend`."""

    def __init__(self, backend: _GuardedBackend, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, network_backend=backend, max_connections=100
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,  # TLS SNI and verification use this original name
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            response = await self._pool.handle_async_request(core_request)
        except Exception as exc:
            mapped = _to_httpx_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        stream = response.stream
        assert isinstance(stream, AsyncIterable)  # an async pool always streams asynchronously
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


# --------------------------------------------------------------------------- the client


@dataclass
class _Prepared:
    """A request ready to send: validated headers (lower-case names), encoded body."""

    method: str
    url: httpx.URL  # built from the canonical parse of the checked url
    headers: dict[str, str]
    content: bytes | None
    may_repeat: bool
    timeout_s: float | None
    secrets: tuple[str, ...]  # secret values used, scrubbed from every message and output


class HttpClient:
    """Runs ``http`` nodes: SSRF-checked connections, redirects, retries, secrets, size caps."""

    def __init__(
        self,
        policy: SsrfPolicy = DEFAULT_POLICY,
        *,
        secrets: Secrets | None = None,
        max_redirects: int = 5,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        resolver: Resolver | None = None,
        default_timeout_ms: int | None = _DEFAULT_TIMEOUT_MS,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._policy = policy
        self._secrets = Secrets() if secrets is None else secrets
        self._max_redirects = max_redirects
        self._max_bytes = max_response_bytes
        self._default_timeout_ms = default_timeout_ms
        self._sleep = sleep
        self._rng = random.Random() if rng is None else rng
        backend = _GuardedBackend(policy, _system_resolve if resolver is None else resolver)
        context = httpx.create_ssl_context() if ssl_context is None else ssl_context
        self._client = httpx.AsyncClient(
            transport=_GuardedTransport(backend, context),
            trust_env=False,
            follow_redirects=False,
            timeout=None,  # the attempt deadline is ours (asyncio.timeout), not per phase
            # A policy that accepts no domain: responses can never set a cookie on us.
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
            headers={"User-Agent": _USER_AGENT},
        )

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._client.aclose()

    async def request(
        self,
        req: HttpRequest,
        *,
        retry: RetryPolicy,
        idempotency_key: str | None,
        effect: str,
    ) -> HttpResponse:
        """Send ``req``, following redirects and retrying per the module's retry rule.

        Returns a 2xx response; anything else raises :class:`HttpError`.
        """
        prepared = self._prepare(req, idempotency_key, effect)
        max_attempts = max(1, retry.max_attempts)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._attempt(prepared)
            except HttpError as exc:
                exc.attempts = attempt
                if attempt >= max_attempts or not _should_retry(exc, prepared.may_repeat):
                    raise
                await self._sleep(self._delay(retry, attempt - 1, exc.retry_after))
                continue
            return response

    # ----------------------------------------------------------------- preparing

    def _prepare(self, req: HttpRequest, key: str | None, effect: str) -> _Prepared:
        method = req.method.upper() if isinstance(req.method, str) else ""
        if not _TOKEN.fullmatch(method):
            raise HttpError("invalid", f"invalid http method {req.method!r}")
        if effect not in _EFFECTS:
            raise HttpError(
                "invalid", f"unknown effect {effect!r} (expected pure, idempotent or effectful)"
            )
        url = self._check_url(req.url)
        headers = _clean_headers(req.headers)
        secrets: tuple[str, ...] = ()
        if req.auth is not None:
            secret = self._secret(req.auth)
            headers["authorization"] = f"Bearer {secret}"
            secrets = (secret,)
        if key is not None and (method in _KEYED_METHODS or effect == "effectful"):
            if not isinstance(key, str) or not key or _BAD_VALUE.search(key):
                raise HttpError("invalid", "invalid idempotency key")
            headers["idempotency-key"] = key
        content = _encode_body(req.body, headers)
        key_sent = "idempotency-key" in headers  # the engine's key, or one the author wrote
        may_repeat = method in _REPEATABLE_METHODS or effect != "effectful" or key_sent
        timeout_ms = self._default_timeout_ms if req.timeout_ms is None else req.timeout_ms
        if timeout_ms is not None and timeout_ms <= 0:
            raise HttpError("invalid", f"timeout_ms must be positive, got {timeout_ms}")
        timeout_s = None if timeout_ms is None else timeout_ms / 1000
        return _Prepared(method, url, headers, content, may_repeat, timeout_s, secrets)

    def _secret(self, name: str) -> str:
        try:
            secret = self._secrets.get(name)
        except SecretError as exc:
            raise HttpError("secret", str(exc)) from None
        if not _SECRET_CHARS.fullmatch(secret):
            # h11 would echo a bad header value in its error message; refuse it here instead.
            message = f'secret "{name}" holds characters not allowed in an http header'
            raise HttpError("secret", message)
        return secret

    def _check_url(self, url: str, *, redirect: bool = False) -> httpx.URL:
        what = "redirect to" if redirect else "url"
        violation = check_url(url, self._policy)
        if violation is not None:
            kind: HttpErrorKind = "invalid" if violation.category == "malformed" else "ssrf"
            raise HttpError(kind, f"{what} refused: {violation.message}")
        try:
            return _httpx_url(parse_url(url))
        except (httpx.InvalidURL, ValueError) as exc:
            raise HttpError("invalid", f"{what} is not usable: {_reason(exc)}") from None

    # ----------------------------------------------------------------- one attempt

    async def _attempt(self, prepared: _Prepared) -> HttpResponse:
        try:
            async with asyncio.timeout(prepared.timeout_s):
                response = await self._follow(prepared)
        except TimeoutError:
            limit = "no limit" if prepared.timeout_s is None else f"{prepared.timeout_s:g} s"
            raise HttpError("timeout", f"request timed out ({limit})") from None
        except _Refused as exc:
            raise HttpError(
                "ssrf", f"connection refused by ssrf policy: {exc.violation.message}"
            ) from None
        except httpx.TimeoutException as exc:
            raise HttpError("timeout", f"request timed out: {_reason(exc)}") from None
        except httpx.ConnectError as exc:
            message = _scrub_text(f"cannot connect: {_reason(exc)}", prepared.secrets)
            raise HttpError("connect", message, unsent=True) from None
        except httpx.DecodingError as exc:
            raise HttpError("invalid", f"cannot decode the response: {_reason(exc)}") from None
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            raise HttpError(
                "invalid", _scrub_text(f"invalid request: {_reason(exc)}", prepared.secrets)
            ) from None
        except httpx.TransportError as exc:
            message = _scrub_text(f"connection failed: {_reason(exc)}", prepared.secrets)
            raise HttpError("connect", message) from None
        if not 200 <= response.status < 300:
            raise HttpError(
                "status",
                _scrub_text(
                    f"{prepared.method} {response.url} returned status {response.status}",
                    prepared.secrets,
                ),
                status=response.status,
                response=response,
                retry_after=_retry_after(response.headers.get("retry-after"), time.time()),
            )
        return response

    async def _follow(self, prepared: _Prepared) -> HttpResponse:
        method, url = prepared.method, prepared.url
        headers, content = dict(prepared.headers), prepared.content
        for _hop in range(self._max_redirects + 1):
            request = self._client.build_request(
                method, url, headers=_wire_headers(headers), content=content
            )
            response = await self._client.send(request, stream=True)
            try:
                location = response.headers.get("location")
                if response.status_code not in _REDIRECTS or location is None:
                    return await self._read(response, prepared.secrets)
            finally:
                await response.aclose()
            target = self._redirect_target(url, location)
            if not _same_origin(url, target) and not _is_upgrade(url, target):
                for name in _CREDENTIAL_HEADERS:
                    headers.pop(name, None)
            if _redirect_method(method, response.status_code) != method:
                method, content = "GET", None
                headers.pop("content-type", None)
            url = target
        raise HttpError("redirects", f"more than {self._max_redirects} redirects")

    def _redirect_target(self, current: httpx.URL, location: str) -> httpx.URL:
        try:
            joined = str(current.join(location))
        except (httpx.InvalidURL, ValueError):
            raise HttpError("invalid", "redirect location is not a valid url") from None
        return self._check_url(joined, redirect=True)

    async def _read(self, response: httpx.Response, secrets: tuple[str, ...]) -> HttpResponse:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise _too_large(self._max_bytes)
        chunks: list[bytes] = []
        size = 0
        # Count decoded bytes: that is what we hold, and a small gzip body can expand a lot.
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_bytes:
                raise _too_large(self._max_bytes)
            chunks.append(chunk)
        headers = {name.lower(): value for name, value in response.headers.items()}
        ok = 200 <= response.status_code < 300
        body = _decode_body(b"".join(chunks), headers.get("content-type", ""), strict=ok)
        return HttpResponse(
            status=response.status_code,
            headers=_scrub(headers, secrets),
            body=_scrub(body, secrets),
            url=_scrub_text(str(response.url), secrets),
        )

    def _delay(self, retry: RetryPolicy, k: int, retry_after: float | None) -> float:
        cap = max(0, retry.max_backoff_ms) / 1000
        if retry_after is not None:
            return min(retry_after, cap)
        ceiling = max(0, retry.backoff_ms) / 1000
        for _ in range(k):  # a loop, not multiplier**k, which overflows floats for large k
            ceiling = min(cap, ceiling * retry.multiplier)
        return self._rng.uniform(0, min(cap, ceiling))


# --------------------------------------------------------------------------- helpers


def _should_retry(exc: HttpError, may_repeat: bool) -> bool:
    if exc.kind == "connect" and exc.unsent:
        return True  # nothing reached the server, so repeating cannot duplicate an effect
    if exc.kind in ("connect", "timeout"):
        return may_repeat
    if exc.kind == "status":
        return exc.status in RETRY_STATUSES and may_repeat
    return False


def _clean_headers(headers: Mapping[str, str]) -> dict[str, str]:
    cleaned: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise HttpError("invalid", f"invalid header name {name!r}")
        lower = name.lower()
        if not isinstance(value, str) or _BAD_VALUE.search(value):
            shown = _REDACTED if lower in _CREDENTIAL_HEADERS else repr(value)
            raise HttpError("invalid", f'invalid value for header "{lower}": {shown}')
        if lower not in _MANAGED_HEADERS:
            cleaned[lower] = value
    return cleaned


def _wire_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    # UTF-8, not httpx's ASCII default, so a non-ASCII value is sent rather than crashing.
    return [(name.encode("ascii"), value.encode("utf-8")) for name, value in headers.items()]


def _encode_body(body: Any, headers: dict[str, str]) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, str):
        headers.setdefault("content-type", "text/plain; charset=utf-8")
        return body.encode("utf-8")
    try:
        text = json.dumps(thaw(body), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise HttpError("invalid", f"request body is not json: {_reason(exc)}") from None
    headers.setdefault("content-type", "application/json")
    return text.encode("utf-8")


def _is_json(content_type: str) -> bool:
    mime = content_type.partition(";")[0].strip().lower()
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


def _charset(content_type: str) -> str:
    match = re.search(r";\s*charset\s*=\s*\"?([A-Za-z0-9._:\-]+)", content_type, re.IGNORECASE)
    if match is not None:
        try:
            "".encode(match.group(1))
        except LookupError:
            return "utf-8"
        return match.group(1)
    return "utf-8"


def _decode_body(data: bytes, content_type: str, *, strict: bool) -> Any:
    if _is_json(content_type):
        if not data.strip():
            return None
        try:
            return json.loads(data)
        except ValueError:
            if strict:
                message = f"response body is not valid json (content-type {content_type})"
                raise HttpError("invalid", message) from None
            # An error page mislabelled as json: keep it as text, the status error matters more.
    return data.decode(_charset(content_type), errors="replace")


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait per a ``Retry-After`` value (delta-seconds or HTTP date), or None."""
    if value is None:
        return None
    text = value.strip()
    if re.fullmatch(r"[0-9]+", text):
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _httpx_url(url: ParsedUrl) -> httpx.URL:
    # Built from the canonical parse, never from the original text: httpx must not read the
    # host differently from the check (see aobc.security.ssrf).
    target = quote(url.path, safe=_ASCII_SAFE)
    if url.query:
        target += "?" + quote(url.query, safe=_ASCII_SAFE)
    return httpx.URL(
        scheme=url.scheme, host=url.host, port=url.port, raw_path=target.encode("ascii")
    )


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _is_upgrade(a: httpx.URL, b: httpx.URL) -> bool:
    """http -> https on the same host and default ports: credentials may follow."""
    return (
        a.host == b.host
        and a.scheme == "http"
        and b.scheme == "https"
        and a.port in (None, 80)
        and b.port in (None, 443)
    )


def _redirect_method(method: str, status: int) -> str:
    # 303 means "see other, with GET"; clients also turn a POST into a GET on 301 and 302.
    if status == 303 and method != "HEAD":
        return "GET"
    if status in (301, 302) and method == "POST":
        return "GET"
    return method


def _too_large(limit: int) -> HttpError:
    return HttpError("too-large", f"response body is larger than {limit} bytes")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:1].lower() + text[1:]


def _scrub_text(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return text


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` with every secret replaced, in case the server echoed it back."""
    if not secrets:
        return value
    if isinstance(value, str):
        return _scrub_text(value, secrets)
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value
