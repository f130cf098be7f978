"""200 concurrent SSE subscribers on one busy run lose no events (httpx, one asyncio loop).

The subscribers connect while the run waits at its approval gate, then the gate opens and
the run fans out into a few hundred map items; every subscriber must see the whole log,
each seq exactly once and in order, and then the end of the run. The figures (events
delivered, time, rate) are printed; run with `-s` to see them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from apiserver import Server, deploy, sse, start_run, wait_for

SUBSCRIBERS = 200
ITEMS = 300

BUSY = """
workflow fanout {
  input n: int = 10
  output total = len(each)
  gate = approval { approvers: ["ops"] }
  make = function "apifns:items" { effect: pure, args: { n: inputs.n } }
  each = map make.list { concurrency: 16, body: function "apifns:nap_square" { effect: idempotent } }
  gate -[approved]-> make -> each
}
"""


async def subscribe(
    client: httpx.AsyncClient, run_id: str, connected: asyncio.Event, counter: list[int]
) -> list[int]:
    seqs: list[int] = []
    async with client.stream("GET", f"/runs/{run_id}/events") as r:
        assert r.status_code == 200
        lines: list[str] = []
        async for line in r.aiter_lines():
            if line.startswith("retry:") and not lines:
                counter[0] += 1
                if counter[0] == SUBSCRIBERS:
                    connected.set()
            lines.append(line)
            if line == "" and len(lines) > 1:
                for name, _, ident in sse(iter(lines)):
                    if ident is not None:
                        seqs.append(ident)
                    if name == "end":
                        return seqs
                    assert name != "dropped", seqs[-1:]
                lines = []
    raise AssertionError("the stream ended without an end event")


def test_200_subscribers_on_one_busy_run_lose_no_events(server: Server) -> None:
    with server.client() as c:
        deploy(c, BUSY, "fanout")
        run = wait_for(c, start_run(c, "fanout", inputs={"n": ITEMS})["id"], "waiting")
    (ticket,) = run["tickets"]

    async def go() -> tuple[list[list[int]], float, int]:
        limits = httpx.Limits(max_connections=SUBSCRIBERS + 10)
        headers = {"Authorization": f"Bearer {server.tokens['viewer']}"}
        async with httpx.AsyncClient(
            base_url=server.url, headers=headers, limits=limits, timeout=120
        ) as client:
            connected = asyncio.Event()
            counter = [0]
            tasks = [
                asyncio.create_task(subscribe(client, run["id"], connected, counter))
                for _ in range(SUBSCRIBERS)
            ]
            await asyncio.wait_for(connected.wait(), 60)
            began = time.perf_counter()
            async with httpx.AsyncClient(
                base_url=server.url,
                headers={"Authorization": f"Bearer {server.tokens['approver']}"},
            ) as approver:
                r = await approver.post(
                    f"/approvals/{ticket['ticket']}", json={"decision": "approve"}
                )
                assert r.status_code == 200
            results = await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - began
            final: dict[str, Any] = (await client.get(f"/runs/{run['id']}")).json()
            return results, elapsed, final["last_seq"]

    results, elapsed, last = asyncio.run(go())
    assert last > ITEMS
    for seqs in results:
        assert seqs == list(range(1, last + 1))
    delivered = SUBSCRIBERS * last
    with server.client() as c:
        watched = run_seconds(c, run["id"])
        alone = wait_for(c, start_run(c, "fanout", inputs={"n": ITEMS})["id"], "waiting")
        t = alone["tickets"][0]["ticket"]
        c.post(f"/approvals/{t}", json={"decision": "approve"})
        wait_for(c, alone["id"], "succeeded")
        unwatched = run_seconds(c, alone["id"])
    print(
        f"\nfan-out: {SUBSCRIBERS} subscribers x {last} events = {delivered} events "
        f"in {elapsed:.2f} s after the gate opened ({delivered / elapsed:,.0f} events/s); "
        f"the run itself took {watched:.2f} s watched, {unwatched:.2f} s unwatched"
    )


def run_seconds(c: httpx.Client, run_id: str) -> float:
    """From the gate's decision to the run's end, by the log's own clock."""
    events = c.get(f"/runs/{run_id}/timeline").json()["events"]
    start = next(e["time"] for e in events if e["type"] == "ticket.decided")
    return float(events[-1]["time"] - start)
