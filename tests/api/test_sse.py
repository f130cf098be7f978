"""`GET /runs/{id}/events` read by real clients (httpx, and a raw socket for the slow one):
order and ids, Last-Event-ID resume, the node filter, heartbeats, and dropping a slow
client without stalling the run or anyone else."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from apiserver import Server, deploy, sse, start, start_run, wait_for

GATE = """
workflow gate {
  output sent = send
  prep = function "apifns:echo" { effect: pure }
  review = approval { approvers: ["ops"], timeout: 1h }
  send = function "apifns:record" { effect: effectful }
  prep -> review -[approved]-> send
}
"""

BUSY = """
workflow busy {
  input n: int = 50
  output total = len(each)
  gate = approval { approvers: ["ops"] }
  make = function "apifns:items" { effect: pure, args: { n: inputs.n } }
  each = map make.list { concurrency: 16, body: function "apifns:square" { effect: idempotent } }
  gate -[approved]-> make -> each
}
"""
# The same, with an asynchronous body: items finish over many turns of the server's loop,
# as I/O-bound nodes do, rather than in one synchronous burst.
BUSY_ASYNC = BUSY.replace("workflow busy", "workflow busy_async").replace(
    '"apifns:square"', '"apifns:nap_square"'
)


def stream(
    c: httpx.Client, run_id: str, headers: dict[str, str] | None = None, **params: Any
) -> Iterator[tuple[str, Any, int | None]]:
    with c.stream("GET", f"/runs/{run_id}/events", headers=headers, params=params) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        yield from sse(r.iter_lines())


def until_end(events: Iterator[tuple[str, Any, int | None]]) -> list[tuple[str, Any, int | None]]:
    out = []
    for ev in events:
        if ev[0] == "comment":
            continue
        out.append(ev)
        if ev[0] in ("end", "dropped"):
            break
    return out


def approve(c: httpx.Client, run: dict[str, Any]) -> None:
    (t,) = [t for t in run["tickets"] if t["status"] == "open"]
    r = c.post(f"/approvals/{t['ticket']}", json={"decision": "approve", "reason": "go"})
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def deployed(server: Server) -> None:
    with server.client() as c:
        deploy(c, GATE, "gate")
        deploy(c, BUSY, "busy")


def waiting(server: Server, workflow: str, **inputs: Any) -> dict[str, Any]:
    with server.client() as c:
        return wait_for(c, start_run(c, workflow, inputs=inputs)["id"], "waiting")


def test_a_finished_run_streams_its_whole_log_then_ends(server: Server, deployed: None) -> None:
    run = waiting(server, "gate")
    with server.client() as c:
        approve(c, run)
        wait_for(c, run["id"], "succeeded")
        got = until_end(stream(c, run["id"]))
        log = c.get(f"/runs/{run['id']}/timeline").json()["events"]
    events, end = got[:-1], got[-1]
    assert [(name, data, ident) for name, data, ident in events] == [
        (e["type"], e, e["seq"]) for e in log
    ]
    assert end[0] == "end"
    assert end[1] == {"status": "succeeded", "last_event_id": log[-1]["seq"]}


def test_resume_with_last_event_id_has_no_gap_and_no_duplicate(
    server: Server, deployed: None
) -> None:
    run = waiting(server, "busy", n=40)
    rid = run["id"]
    with server.client() as c:
        first = []
        for name, _, ident in stream(c, rid):
            if name != "comment":
                first.append(ident)
            if name == "ticket.opened":
                break  # the client goes away mid-run
        approve(c, run)
        cut = first[-1]
        rest = until_end(stream(c, rid, headers={"Last-Event-ID": str(cut)}))
        again = until_end(stream(c, rid, after=cut))  # ?after= is the same, for curl users
    ids = [i for _, _, i in rest if i is not None]
    assert first == list(range(1, cut + 1))
    assert ids == list(range(cut + 1, ids[-1] + 1))
    assert rest[-1][0] == "end" and rest[-1][1]["status"] == "succeeded"
    assert rest[-2][0] == "run.succeeded"
    assert [i for _, _, i in again if i is not None] == ids


def test_the_node_filter(server: Server, deployed: None) -> None:
    run = waiting(server, "gate")
    with server.client() as c:
        approve(c, run)
        got = until_end(stream(c, run["id"], node="review"))
    events = got[:-1]
    assert {d["node"] for _, d, _ in events} == {"review"}
    assert [n for n, _, _ in events] == ["ticket.opened", "ticket.decided", "node.succeeded"]
    assert got[-1][0] == "end"


def test_an_idle_stream_sends_heartbeats(server: Server, deployed: None) -> None:
    run = waiting(server, "gate")  # the module's server beats every 0.2 s
    beats = 0
    with server.client() as c:
        for name, data, _ in stream(c, run["id"]):
            if name == "comment" and data == "heartbeat":
                beats += 1
                if beats == 3:
                    break
        approve(c, run)
    assert beats == 3


SLOW = """
workflow slow {
  input n: int = 24
  output total = len(each)
  gate = approval { approvers: ["ops"] }
  make = function "apifns:items" { effect: pure, args: { n: inputs.n } }
  each = map make.list { concurrency: 1, body: function "apifns:nap" { effect: idempotent, args: { seconds: 0.05 } } }
  gate -[approved]-> make -> each
}
"""


def test_a_filtered_stream_beats_while_other_nodes_are_busy(server: Server) -> None:
    """Events arrive every 50 ms, none of them about the filtered node: the client must
    still hear a heartbeat every 0.2 s, or a proxy would time the quiet stream out."""
    with server.client() as c:
        deploy(c, SLOW, "slow")
    run = waiting(server, "slow")
    beats, names = 0, []
    with server.client() as c:
        for name, _, _ in stream(c, run["id"], node="gate"):
            if name == "comment":
                beats += "node.succeeded" in names  # the gate is done; the map runs
                continue
            names.append(name)
            if name == "ticket.opened":
                approve(c, run)
            if name == "end":
                break
        took = wait_for(c, run["id"], "succeeded")["updated"] - run["updated"]
    assert names == ["ticket.opened", "ticket.decided", "node.succeeded", "end"]
    assert took > 1.0  # 24 items of 50 ms, one at a time
    assert beats >= 3, (beats, took)


def test_unknown_runs_and_bad_ids(server: Server) -> None:
    with server.client() as c:
        assert c.get("/runs/r-nope/events").status_code == 404
        bad = c.get("/runs/r-nope/events", headers={"Last-Event-ID": "x"})
        assert bad.status_code == 400


# --- a slow client ------------------------------------------------------------------------


def raw_subscribe(url: str, token: str, run_id: str) -> socket.socket:
    """A client that asks for the stream and then reads nothing: a tiny receive buffer."""
    parts = urlsplit(url)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((parts.hostname, parts.port))
    s.sendall(
        f"GET /runs/{run_id}/events HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n".encode()
    )
    return s


def read_all(s: socket.socket) -> list[str]:
    """Everything the server sent, de-chunked, as lines."""
    s.settimeout(30)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"200" in head.split(b"\r\n")[0]
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out += rest[:n]
        body = rest[n + 2 :]
    return out.decode().split("\n")


def test_a_slow_client_is_dropped_and_stalls_nothing(tmp_path: Path) -> None:
    slow_server = start(
        tmp_path / "store",
        tmp_path / "tokens.toml",
        *("--sse-buffer", "64", "--stall", "60", "--socket-sndbuf", "16384"),
    )
    try:
        with slow_server.client() as c:
            deploy(c, BUSY_ASYNC, "busy_async")
            run = wait_for(c, start_run(c, "busy_async", inputs={"n": 3000})["id"], "waiting")
            rid = run["id"]
            slow = raw_subscribe(slow_server.url, slow_server.tokens["admin"], rid)
            fast: list[tuple[str, Any, int | None]] = []
            reader = threading.Thread(
                target=lambda: fast.extend(until_end(stream(slow_server.client(), rid)))
            )
            reader.start()
            wait_subscribers(c, 2)
            approve(c, run)
            done = wait_for(c, rid, "succeeded", timeout=60)  # while the slow one reads nothing
            reader.join(60)
            last = done["last_seq"]
            metrics = c.get("/metrics").text
            # The fast client got everything, in order.
            assert [i for _, _, i in fast if i is not None] == list(range(1, last + 1))
            assert fast[-1][0] == "end"
            # The slow one: a prefix, then the drop, with the id to resume from.
            lines = read_all(slow)
            got = list(sse(iter(lines)))
            ids = [i for _, _, i in got if i is not None]
            dropped = [d for n, d, _ in got if n == "dropped"]
            assert len(dropped) == 1, got[-3:]
            assert ids == list(range(1, ids[-1] + 1))
            assert dropped[0]["last_event_id"] == ids[-1] < last
            assert "stopped reading" in dropped[0]["reason"]
            resumed = until_end(stream(c, rid, headers={"Last-Event-ID": str(ids[-1])}))
            assert [i for _, _, i in resumed if i is not None] == list(range(ids[-1] + 1, last + 1))
            assert "aobc_sse_dropped_total 1.0" in metrics
    finally:
        slow_server.stop()


def wait_subscribers(c: httpx.Client, n: int) -> None:
    import time

    deadline = time.monotonic() + 30
    while f"aobc_sse_subscribers {float(n)}" not in c.get("/metrics").text:
        assert time.monotonic() < deadline
        time.sleep(0.02)
