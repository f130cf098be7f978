"""The ``http`` executor against real local servers: round trips, retries, redirects, SSRF."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Awaitable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TypeVar

import httpcore
import pytest

from aobc.ir import RetryPolicy
from aobc.runtime.executors.http import (
    HttpClient,
    HttpError,
    HttpRequest,
    HttpResponse,
    Secrets,
)
from aobc.security.ssrf import SsrfPolicy
from tests.runtime.httpserver import HttpServer, Reply, echo, redirect, sequence

T = TypeVar("T")
pytestmark = pytest.mark.integration

NO_RETRY = RetryPolicy(max_attempts=1)
SECRET = "s3cr3t-Token-value-0123456789"


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


class Sleeps:
    """An injected sleep: records the delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Dns:
    """A scripted resolver: each name answers its lists in turn (the last one repeats)."""

    def __init__(self, answers: dict[str, Sequence[Sequence[str]]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        script = self.answers.get(host)
        if script is None:
            raise socket.gaierror(socket.EAI_NONAME, "name or service not known")
        seen = sum(1 for name, _ in self.calls if name == host)
        return list(script[min(seen, len(script)) - 1])


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connection the client opens; anything but loopback fails the test at once.

    A safety net as well as a probe: a bug in the guard must not send a packet to 10.0.0.5 or
    169.254.169.254 from a test machine.
    """
    opened: list[tuple[str, int]] = []
    real = httpcore.AnyIOBackend.connect_tcp

    async def guarded(
        self: httpcore.AnyIOBackend, host: str, port: int, *args: Any, **kwargs: Any
    ) -> Any:
        opened.append((host, port))
        if host != "127.0.0.1":
            pytest.fail(f"the client tried to connect to {host}:{port}")
        return await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", guarded)
    return opened


@pytest.fixture
def server() -> Iterator[HttpServer]:
    with HttpServer() as srv:
        yield srv


@pytest.fixture
def other() -> Iterator[HttpServer]:
    with HttpServer() as srv:
        yield srv


def allow(*servers: HttpServer, extra: tuple[str, ...] = ()) -> SsrfPolicy:
    return SsrfPolicy(allow_hosts=tuple(f"127.0.0.1:{s.port}" for s in servers) + extra)


def call(
    client_kwargs: dict[str, Any],
    req: HttpRequest,
    *,
    retry: RetryPolicy = NO_RETRY,
    key: str | None = None,
    effect: str = "idempotent",
) -> HttpResponse:
    async def go() -> HttpResponse:
        async with HttpClient(**client_kwargs) as client:
            return await client.request(req, retry=retry, idempotency_key=key, effect=effect)

    return run(go())


def failure(
    client_kwargs: dict[str, Any],
    req: HttpRequest,
    *,
    retry: RetryPolicy = NO_RETRY,
    key: str | None = None,
    effect: str = "idempotent",
) -> HttpError:
    with pytest.raises(HttpError) as info:
        call(client_kwargs, req, retry=retry, key=key, effect=effect)
    return info.value


# --------------------------------------------------------------------------- round trips


def test_get_json_round_trip(server: HttpServer) -> None:
    server.route("/data", Reply(200, {"X-Trace-ID": "abc"}, {"items": [1, 2], "ok": True}))
    response = call({"policy": allow(server)}, HttpRequest("GET", server.url("/data?q=1")))
    assert response.to_output() == {
        "status": 200,
        "headers": response.headers,
        "body": {"items": [1, 2], "ok": True},
        "url": server.url("/data?q=1"),
    }
    assert response.headers["x-trace-id"] == "abc"
    assert all(name == name.lower() for name in response.headers)
    (seen,) = server.received()
    assert (seen.method, seen.path) == ("GET", "/data?q=1")
    assert seen.headers["host"] == f"127.0.0.1:{server.port}"


def test_post_json_body_is_encoded_with_content_type(server: HttpServer) -> None:
    server.route("/echo", echo)
    req = HttpRequest("post", server.url("/echo"), {"X-Mine": "1"}, {"name": "é", "n": [1, 2.5]})
    response = call({"policy": allow(server)}, req)
    assert response.body["method"] == "POST"
    assert json.loads(response.body["body"]) == {"name": "é", "n": [1, 2.5]}
    (seen,) = server.received()
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["x-mine"] == "1"


def test_string_body_is_text_unless_content_type_given(server: HttpServer) -> None:
    server.route("/echo", echo)
    call({"policy": allow(server)}, HttpRequest("PUT", server.url("/echo"), body="hello"))
    req = HttpRequest("PUT", server.url("/echo"), {"Content-Type": "text/csv"}, "a,b")
    call({"policy": allow(server)}, req)
    first, second = server.received()
    assert (first.headers["content-type"], first.body) == ("text/plain; charset=utf-8", b"hello")
    assert (second.headers["content-type"], second.body) == ("text/csv", b"a,b")


def test_text_response_is_decoded_with_replacement(server: HttpServer) -> None:
    server.route("/t", Reply(200, {"Content-Type": "text/plain"}, b"caf\xc3\xa9 \xff"))
    response = call({"policy": allow(server)}, HttpRequest("GET", server.url("/t")))
    assert response.body == "café \ufffd"


def test_problem_json_is_decoded_and_bad_json_is_invalid(server: HttpServer) -> None:
    server.route("/p", Reply(200, {"Content-Type": "application/problem+json"}, b'{"a": 1}'))
    server.route("/bad", Reply(200, {"Content-Type": "application/json"}, b"{nope"))
    assert call({"policy": allow(server)}, HttpRequest("GET", server.url("/p"))).body == {"a": 1}
    error = failure({"policy": allow(server)}, HttpRequest("GET", server.url("/bad")))
    assert error.kind == "invalid"


def test_non_2xx_is_a_status_error_carrying_the_response(server: HttpServer) -> None:
    server.route("/missing", Reply(404, body={"error": "nope"}))
    error = failure({"policy": allow(server)}, HttpRequest("GET", server.url("/missing")))
    assert (error.kind, error.status, error.attempts) == ("status", 404, 1)
    assert error.response is not None and error.response.body == {"error": "nope"}
    assert "404" in str(error)


# --------------------------------------------------------------------------- retries


def test_retries_503_then_succeeds_with_the_same_idempotency_key(server: HttpServer) -> None:
    server.route("/pay", sequence(Reply(503), Reply(503), Reply(201, body={"id": 7})))
    sleeps = Sleeps()
    retry = RetryPolicy(max_attempts=4, backoff_ms=100, max_backoff_ms=1000, multiplier=2.0)
    req = HttpRequest("POST", server.url("/pay"), body={"amount": 5})
    response = call(
        {"policy": allow(server), "sleep": sleeps},
        req,
        retry=retry,
        key="run-1/pay",
        effect="effectful",
    )
    assert response.status == 201
    seen = server.received("/pay")
    assert len(seen) == 3
    assert [r.headers.get("idempotency-key") for r in seen] == ["run-1/pay"] * 3
    assert [r.json() for r in seen] == [{"amount": 5}] * 3
    # Full jitter: retry k waits uniform(0, min(max_backoff, backoff * multiplier**k)).
    assert len(sleeps.delays) == 2
    assert 0 <= sleeps.delays[0] <= 0.1 and 0 <= sleeps.delays[1] <= 0.2


def test_effectful_post_without_key_is_not_retried(server: HttpServer) -> None:
    server.route("/pay", sequence(Reply(503), Reply(200)))
    sleeps = Sleeps()
    req = HttpRequest("POST", server.url("/pay"), body={"amount": 5})
    error = failure(
        {"policy": allow(server), "sleep": sleeps},
        req,
        retry=RetryPolicy(max_attempts=3),
        effect="effectful",
    )
    assert (error.kind, error.status, error.attempts) == ("status", 503, 1)
    assert len(server.received("/pay")) == 1
    assert "idempotency-key" not in server.received("/pay")[0].headers
    assert sleeps.delays == []


@pytest.mark.parametrize(
    ("method", "effect", "key", "attempts"),
    [
        ("GET", "effectful", None, 2),  # idempotent method
        ("PUT", "effectful", None, 2),
        ("DELETE", "effectful", None, 2),
        ("POST", "idempotent", None, 2),  # the node says repeating is fine
        ("POST", "pure", None, 2),
        ("PATCH", "effectful", "k-1", 2),  # a key makes the server deduplicate
        ("POST", "effectful", None, 1),
        ("PATCH", "effectful", None, 1),
    ],
)
def test_retry_rule(
    server: HttpServer, method: str, effect: str, key: str | None, attempts: int
) -> None:
    server.route("/r", sequence(Reply(502), Reply(200)))
    req = HttpRequest(method, server.url("/r"), body={"x": 1})
    kwargs = {"policy": allow(server), "sleep": Sleeps()}
    retry = RetryPolicy(max_attempts=5, backoff_ms=1)
    if attempts == 1:
        assert failure(kwargs, req, retry=retry, key=key, effect=effect).attempts == 1
    else:
        assert call(kwargs, req, retry=retry, key=key, effect=effect).status == 200
    assert len(server.received("/r")) == attempts


def test_idempotency_key_sent_on_post_and_on_effectful_nodes_only(server: HttpServer) -> None:
    server.route("/e", echo)
    kwargs = {"policy": allow(server)}
    call(kwargs, HttpRequest("POST", server.url("/e")), key="k1", effect="pure")
    call(kwargs, HttpRequest("GET", server.url("/e")), key="k2", effect="effectful")
    call(kwargs, HttpRequest("GET", server.url("/e")), key="k3", effect="idempotent")
    keys = [r.headers.get("idempotency-key") for r in server.received()]
    assert keys == ["k1", "k2", None]


@pytest.mark.parametrize("status", [400, 401, 404, 409, 501])
def test_non_retryable_statuses_are_not_retried(server: HttpServer, status: int) -> None:
    server.route("/s", Reply(status))
    retry = RetryPolicy(max_attempts=3, backoff_ms=1)
    error = failure(
        {"policy": allow(server), "sleep": Sleeps()},
        HttpRequest("GET", server.url("/s")),
        retry=retry,
    )
    assert (error.status, error.attempts) == (status, 1)


def test_retries_stop_at_max_attempts(server: HttpServer) -> None:
    server.route("/down", Reply(500))
    sleeps = Sleeps()
    retry = RetryPolicy(max_attempts=3, backoff_ms=50, max_backoff_ms=60, multiplier=10)
    error = failure(
        {"policy": allow(server), "sleep": sleeps},
        HttpRequest("GET", server.url("/down")),
        retry=retry,
    )
    assert (error.kind, error.status, error.attempts) == ("status", 500, 3)
    assert len(sleeps.delays) == 2 and all(0 <= d <= 0.06 for d in sleeps.delays)


def test_retry_after_seconds_is_honoured_up_to_max_backoff(server: HttpServer) -> None:
    server.route("/a", sequence(Reply(429, {"Retry-After": "7"}), Reply(200)))
    server.route("/b", sequence(Reply(503, {"Retry-After": "120"}), Reply(200)))
    sleeps = Sleeps()
    retry = RetryPolicy(max_attempts=2, backoff_ms=10, max_backoff_ms=30_000)
    kwargs = {"policy": allow(server), "sleep": sleeps}
    call(kwargs, HttpRequest("GET", server.url("/a")), retry=retry)
    call(kwargs, HttpRequest("GET", server.url("/b")), retry=retry)
    assert sleeps.delays == [7.0, 30.0]


def test_retry_after_http_date(server: HttpServer) -> None:
    future = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    server.route("/f", sequence(Reply(503, {"Retry-After": future}), Reply(200)))
    server.route("/p", sequence(Reply(503, {"Retry-After": past}), Reply(200)))
    sleeps = Sleeps()
    retry = RetryPolicy(max_attempts=2, backoff_ms=10, max_backoff_ms=5_000)
    kwargs = {"policy": allow(server), "sleep": sleeps}
    call(kwargs, HttpRequest("GET", server.url("/f")), retry=retry)
    call(kwargs, HttpRequest("GET", server.url("/p")), retry=retry)
    assert sleeps.delays == [5.0, 0.0]


def test_connect_failure_is_retried_even_for_an_effectful_post() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    kwargs = {"policy": SsrfPolicy(allow_hosts=(f"127.0.0.1:{port}",)), "sleep": sleeps}
    req = HttpRequest("POST", f"http://127.0.0.1:{port}/x", body={"a": 1})
    error = failure(
        kwargs, req, retry=RetryPolicy(max_attempts=3, backoff_ms=1), effect="effectful"
    )
    assert (error.kind, error.attempts) == ("connect", 3)
    assert len(sleeps.delays) == 2


def test_timeout_bounds_the_attempt(server: HttpServer) -> None:
    release = threading.Event()
    server.route("/slow", Reply(200, hold=release))
    try:
        req = HttpRequest("GET", server.url("/slow"), timeout_ms=200)
        retry = RetryPolicy(max_attempts=2, backoff_ms=1)
        error = failure({"policy": allow(server), "sleep": Sleeps()}, req, retry=retry)
    finally:
        release.set()
    assert (error.kind, error.attempts) == ("timeout", 2)
    assert "timed out" in str(error)


# --------------------------------------------------------------------------- redirects


def test_redirect_chain_is_followed(server: HttpServer) -> None:
    server.route("/a", redirect("/b", 301))
    server.route("/b", redirect(server.url("/c"), 302))
    server.route("/c", redirect("d?x=1", 307))
    server.route("/d", Reply(200, body="done"))
    response = call({"policy": allow(server)}, HttpRequest("GET", server.url("/a")))
    assert (response.body, response.url) == ("done", server.url("/d?x=1"))
    assert [r.path for r in server.received()] == ["/a", "/b", "/c", "/d?x=1"]


def test_303_turns_a_post_into_get_and_307_keeps_it(server: HttpServer) -> None:
    server.route("/see", redirect("/echo", 303))
    server.route("/temp", redirect("/echo", 307))
    server.route("/echo", echo)
    kwargs = {"policy": allow(server)}
    seen_other = call(kwargs, HttpRequest("POST", server.url("/see"), body={"a": 1})).body
    kept = call(kwargs, HttpRequest("POST", server.url("/temp"), body={"a": 1})).body
    assert (seen_other["method"], seen_other["body"]) == ("GET", "")
    assert "content-type" not in seen_other["headers"]
    assert (kept["method"], json.loads(kept["body"])) == ("POST", {"a": 1})


def test_too_many_redirects(server: HttpServer) -> None:
    server.route("/loop", redirect("/loop"))
    error = failure(
        {"policy": allow(server), "max_redirects": 2}, HttpRequest("GET", server.url("/loop"))
    )
    assert error.kind == "redirects"
    assert len(server.received("/loop")) == 3


def test_redirect_without_location_is_the_final_response(server: HttpServer) -> None:
    server.route("/odd", Reply(302))
    error = failure({"policy": allow(server)}, HttpRequest("GET", server.url("/odd")))
    assert (error.kind, error.status) == ("status", 302)


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://localhost:{other}/",
        "http://127.0.0.1:{other}/",  # allowlisted address, but not on this port
        "http://0x7f000001:{other}/",  # loopback spelt as an integer
        "file:///etc/passwd",
        "http://good.example@127.0.0.1:{port}/",
    ],
)
def test_redirect_to_a_forbidden_target_is_refused(
    server: HttpServer, other: HttpServer, location: str, connections: list[tuple[str, int]]
) -> None:
    other.route("/", Reply(200))
    target = location.format(other=other.port, port=server.port)
    server.route("/go", redirect(target))
    policy = SsrfPolicy(allow_hosts=(f"127.0.0.1:{server.port}",))
    retry = RetryPolicy(max_attempts=3, backoff_ms=1)
    error = failure(
        {"policy": policy, "sleep": Sleeps()}, HttpRequest("GET", server.url("/go")), retry=retry
    )
    assert error.kind == "ssrf" and error.attempts == 1  # never retried
    assert str(error).startswith("redirect to refused")
    assert other.received() == []
    assert {port for _, port in connections} == {server.port}


def test_allowlisted_redirect_target_is_followed(server: HttpServer, other: HttpServer) -> None:
    other.route("/x", Reply(200, body="there"))
    server.route("/go", redirect(other.url("/x")))
    response = call({"policy": allow(server, other)}, HttpRequest("GET", server.url("/go")))
    assert response.body == "there"


def test_cross_host_redirect_drops_authorization(
    server: HttpServer, other: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AOBC_SECRET_API_TOKEN", SECRET)
    dns = Dns({"a.example.test": [["127.0.0.1"]], "b.example.test": [["127.0.0.1"]]})
    policy = SsrfPolicy(allow_hosts=("a.example.test", "b.example.test"))
    server.route("/same", redirect("/echo"))
    server.route("/cross", redirect(other.url("/echo", host="b.example.test")))
    server.route("/echo", echo)
    other.route("/echo", echo)
    kwargs = {"policy": policy, "resolver": dns}
    start = server.url("/same", host="a.example.test")
    same = call(kwargs, HttpRequest("GET", start, {"Cookie": "c=1"}, auth="api-token"))
    start = server.url("/cross", host="a.example.test")
    cross = call(kwargs, HttpRequest("GET", start, {"Cookie": "c=1"}, auth="api-token"))
    assert server.received("/echo")[0].headers["authorization"] == f"Bearer {SECRET}"
    assert server.received("/cross")[0].headers["authorization"] == f"Bearer {SECRET}"
    (arrived,) = other.received()
    assert "authorization" not in arrived.headers and "cookie" not in arrived.headers
    assert arrived.headers["host"] == f"b.example.test:{other.port}"
    # The echoed secret is scrubbed from the node output.
    assert SECRET not in json.dumps(same.to_output()) + json.dumps(cross.to_output())
    assert same.body["headers"]["authorization"] == "Bearer [redacted]"


# --------------------------------------------------------------------------- SSRF at connect time


def test_private_dns_answer_is_refused_before_connecting(
    connections: list[tuple[str, int]],
) -> None:
    dns = Dns({"api.example.test": [["10.0.0.5"]]})
    retry = RetryPolicy(max_attempts=3, backoff_ms=1)
    req = HttpRequest("GET", "http://api.example.test/v1")
    error = failure({"resolver": dns, "sleep": Sleeps()}, req, retry=retry)
    assert (error.kind, error.attempts) == ("ssrf", 1)
    assert "10.0.0.5" in str(error) and "api.example.test" in str(error)
    assert dns.calls == [("api.example.test", 80)]
    assert connections == []


def test_one_private_answer_among_public_ones_refuses_the_name(
    connections: list[tuple[str, int]],
) -> None:
    dns = Dns({"api.example.test": [["93.184.216.34", "169.254.169.254"]]})
    error = failure({"resolver": dns}, HttpRequest("GET", "https://api.example.test/"))
    assert error.kind == "ssrf" and "metadata" in str(error)
    assert connections == []


def test_allowlisted_name_resolving_to_loopback_connects_to_that_address(
    server: HttpServer, connections: list[tuple[str, int]]
) -> None:
    server.route("/v1", echo)
    dns = Dns({"api.example.test": [["127.0.0.1"]]})
    policy = SsrfPolicy(allow_hosts=(f"api.example.test:{server.port}",))
    response = call(
        {"policy": policy, "resolver": dns},
        HttpRequest("GET", server.url("/v1", host="API.Example.TEST")),
    )
    assert response.body["headers"]["host"] == f"api.example.test:{server.port}"
    assert connections == [("127.0.0.1", server.port)]
    assert dns.calls == [("api.example.test", server.port)]


def test_name_resolving_to_loopback_is_refused_unless_allowlisted(
    server: HttpServer, connections: list[tuple[str, int]]
) -> None:
    dns = Dns({"evil.example.test": [["127.0.0.1"]]})
    policy = SsrfPolicy(allow_hosts=(f"api.example.test:{server.port}", "127.0.0.2"))
    error = failure(
        {"policy": policy, "resolver": dns},
        HttpRequest("GET", server.url("/", host="evil.example.test")),
    )
    assert error.kind == "ssrf" and "loopback" in str(error)
    assert connections == [] and server.received() == []


def test_dns_rebinding_is_checked_on_every_connection(
    server: HttpServer, connections: list[tuple[str, int]]
) -> None:
    # First answer passes the check (an allowlisted name may reach loopback); the rebound
    # answer is a metadata address, which a name allowlist never opens. The first response
    # closes its connection, so the second request must resolve, and check, again.
    server.route("/", Reply(200, body="first", close=True))
    dns = Dns({"rebind.example.test": [["127.0.0.1"], ["169.254.169.254"]]})
    policy = SsrfPolicy(allow_hosts=("rebind.example.test",))
    req = HttpRequest("GET", server.url("/", host="rebind.example.test"))

    async def go() -> tuple[HttpResponse, HttpError]:
        async with HttpClient(policy, resolver=dns) as client:
            first = await client.request(req, retry=NO_RETRY, idempotency_key=None, effect="pure")
            with pytest.raises(HttpError) as info:
                await client.request(req, retry=NO_RETRY, idempotency_key=None, effect="pure")
            return first, info.value

    first, error = run(go())
    assert first.body == "first"
    assert error.kind == "ssrf" and "169.254.169.254" in str(error)
    assert len(dns.calls) == 2
    assert connections == [("127.0.0.1", server.port)]  # never the rebound address


def test_static_url_to_a_private_address_is_refused_before_any_attempt(
    connections: list[tuple[str, int]],
) -> None:
    for url in (
        "http://169.254.169.254/",
        "http://0x7f000001/",
        "http://localhost/",
        "http://[::1]/",
    ):
        error = failure({}, HttpRequest("GET", url))
        assert (error.kind, error.attempts) == ("ssrf", 0), url
    assert failure({}, HttpRequest("GET", "http://a b/")).kind == "invalid"
    assert connections == []


def test_proxy_environment_is_ignored(server: HttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    server.route("/", Reply(200, body="direct"))
    assert call({"policy": allow(server)}, HttpRequest("GET", server.url("/"))).body == "direct"


def test_cookies_are_never_stored(server: HttpServer) -> None:
    server.route("/set", Reply(200, {"Set-Cookie": "session=abc; Path=/"}))
    server.route("/echo", echo)

    async def go() -> None:
        async with HttpClient(allow(server)) as client:
            for path in ("/set", "/echo"):
                req = HttpRequest("GET", server.url(path))
                await client.request(req, retry=NO_RETRY, idempotency_key=None, effect="pure")

    run(go())
    assert "cookie" not in server.received("/echo")[0].headers


# --------------------------------------------------------------------------- size cap


def test_response_over_the_cap_is_too_large(server: HttpServer) -> None:
    server.route("/big", Reply(200, {"Content-Type": "text/plain"}, b"x" * 5000))
    server.route("/ok", Reply(200, {"Content-Type": "text/plain"}, b"x" * 1000))
    kwargs = {"policy": allow(server), "max_response_bytes": 1000}
    error = failure(
        kwargs, HttpRequest("GET", server.url("/big")), retry=RetryPolicy(max_attempts=3)
    )
    assert (error.kind, error.attempts) == ("too-large", 1)
    assert len(call(kwargs, HttpRequest("GET", server.url("/ok"))).body) == 1000


def test_decompressed_size_counts_against_the_cap(server: HttpServer) -> None:
    bomb = gzip.compress(b"\0" * 200_000)
    assert len(bomb) < 1000
    server.route(
        "/gz", Reply(200, {"Content-Encoding": "gzip", "Content-Type": "text/plain"}, bomb)
    )
    error = failure(
        {"policy": allow(server), "max_response_bytes": 10_000},
        HttpRequest("GET", server.url("/gz")),
    )
    assert error.kind == "too-large"


# --------------------------------------------------------------------------- secrets


def test_secret_from_env_is_sent_and_never_leaks(
    server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AOBC_SECRET_API_TOKEN", SECRET)
    server.route("/echo", echo)
    server.route("/fail", lambda r: Reply(500, body={"echo": r.headers}))
    kwargs = {"policy": allow(server)}
    ok = call(kwargs, HttpRequest("GET", server.url("/echo"), auth="api-token"))
    assert server.received("/echo")[0].headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in json.dumps(ok.to_output()) and SECRET not in repr(ok)
    req = HttpRequest(
        "GET",
        server.url(f"/fail?token={SECRET}"),
        {"Authorization": "Bearer mine"},
        auth="api-token",
    )
    error = failure(kwargs, req)
    assert error.kind == "status" and error.response is not None
    for text in (
        str(error),
        repr(error),
        repr(error.response),
        json.dumps(error.response.to_output()),
    ):
        assert SECRET not in text
    assert "mine" not in repr(req) and "[redacted]" in repr(req)


def test_missing_secret_names_it_and_where_it_looked(server: HttpServer, tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"other": "x"}))
    kwargs = {"policy": allow(server), "secrets": Secrets(path, environ={})}
    error = failure(kwargs, HttpRequest("GET", server.url("/"), auth="gh-token"))
    assert (error.kind, error.attempts) == ("secret", 0)
    assert '"gh-token"' in str(error)
    assert "AOBC_SECRET_GH_TOKEN" in str(error) and str(path) in str(error)
    assert server.received() == []


def test_secret_with_a_newline_is_refused_without_echoing_it(server: HttpServer) -> None:
    kwargs = {
        "policy": allow(server),
        "secrets": Secrets(environ={"AOBC_SECRET_T": "abc\r\nX-Evil: 1"}),
    }
    error = failure(kwargs, HttpRequest("GET", server.url("/"), auth="t"))
    assert error.kind == "secret" and "abc" not in str(error)


def test_secrets_file_json_and_toml_env_first(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"api": "from-json"}))
    (tmp_path / "s.toml").write_text('api = "from-toml"\n"my-key" = "k"\n')
    assert Secrets(tmp_path / "s.json", environ={}).get("api") == "from-json"
    toml = Secrets(tmp_path / "s.toml", environ={})
    assert (toml.get("api"), toml.get("my-key")) == ("from-toml", "k")
    assert Secrets(tmp_path / "s.toml", environ={"AOBC_SECRET_API": "env"}).get("api") == "env"
    assert "from" not in repr(toml)
    (tmp_path / "bad.json").write_text('{"api": 1}')
    with pytest.raises(LookupError, match="must be a string"):
        Secrets(tmp_path / "bad.json")


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away CA and a certificate for api.example.test signed by it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=aobc test ca",
        "-days",
        "2",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    openssl("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=api.example.test")
    (d / "ext.cnf").write_text("subjectAltName=DNS:api.example.test\nbasicConstraints=CA:FALSE\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    return d


def test_tls_verifies_and_sends_sni_for_the_original_name(certs: Path) -> None:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(certs / "leaf.pem", certs / "leaf.key")
    names: list[str | None] = []

    def remember(_sock: ssl.SSLObject, name: str, _ctx: ssl.SSLContext) -> None:
        names.append(name)

    tls.sni_callback = remember
    trust = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    dns = Dns({"api.example.test": [["127.0.0.1"]], "other.example.test": [["127.0.0.1"]]})
    policy = SsrfPolicy(allow_hosts=("api.example.test", "other.example.test"))
    kwargs = {"policy": policy, "resolver": dns, "ssl_context": trust}
    with HttpServer(tls) as server:
        server.route("/", Reply(200, body="secure"))
        response = call(kwargs, HttpRequest("GET", server.url("/", host="api.example.test")))
        assert response.body == "secure"
        # Same address, other name: the certificate does not match, so the connection fails.
        error = failure(kwargs, HttpRequest("GET", server.url("/", host="other.example.test")))
    assert error.kind == "connect" and "certificate" in str(error).lower()
    assert names[0] == "api.example.test"


# --------------------------------------------------------------------------- invalid input


@pytest.mark.parametrize(
    ("req", "effect"),
    [
        (HttpRequest("GE T", "http://127.0.0.1/"), "pure"),
        (HttpRequest("GET", "http://127.0.0.1/", {"X-A": "1\r\nX-B: 2"}), "pure"),
        (HttpRequest("GET", "http://127.0.0.1/", {"Bad Name": "1"}), "pure"),
        (HttpRequest("POST", "http://127.0.0.1/", body={"x": float("nan")}), "pure"),
        (HttpRequest("POST", "http://127.0.0.1/", body={"x": object()}), "pure"),
        (HttpRequest("GET", "http://127.0.0.1/"), "sometimes"),
    ],
)
def test_invalid_requests(req: HttpRequest, effect: str) -> None:
    error = failure({"policy": SsrfPolicy(allow_hosts=("127.0.0.1",))}, req, effect=effect)
    assert (error.kind, error.attempts) == ("invalid", 0)
