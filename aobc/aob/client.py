"""The HTTP side of `aob`: requests, errors as one-liners, and the SSE reader."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from aobc.aob import term


@dataclass
class ClientError(Exception):
    """Something `aob` reports in one line (plus a few diagnostics) and exits 1 on."""

    message: str
    code: str = "error"
    diagnostics: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


def report(err: ClientError) -> None:
    out = sys.stderr
    out.write(f"aob: {term.paint('error', '31;1', out)}: {err.message}  [{err.code}]\n")
    # A lone diagnostic that only repeats the message, with no place to point at, adds nothing.
    shown = [
        d
        for d in err.diagnostics
        if d.get("message") != err.message or d.get("line") or len(err.diagnostics) > 1
    ]
    for d in shown[:10]:
        where = d.get("file") or ""
        if d.get("line"):
            where += f":{d['line']}:{d.get('column') or 1}"
        elif d.get("pointer"):
            where += f"#{d['pointer']}"
        code = f"  [{d['code']}]" if d.get("code") else ""
        out.write(f"  {where}: {d.get('severity', 'error')}: {d.get('message')}{code}\n")
    if len(shown) > 10:
        out.write(f"  ... and {len(shown) - 10} more (use --json to see all)\n")


@dataclass(frozen=True, slots=True)
class Sse:
    """One server-sent event."""

    event: str
    data: Any
    id: int | None


class Client:
    def __init__(self, server: str, token: str | None, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        headers = {"User-Agent": "aob/0.1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, err: httpx.HTTPError) -> ClientError:
        if isinstance(err, httpx.ConnectError | httpx.ConnectTimeout):
            return ClientError(
                f"cannot reach the control plane at {self.server} (is `aobc serve` running? "
                "set --server or AOB_SERVER)",
                "server-unreachable",
            )
        if isinstance(err, httpx.TimeoutException):
            return ClientError(f"{self.server} did not answer in time", "server-unreachable")
        return ClientError(f"talking to {self.server} failed: {err}", "server-unreachable")

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        try:
            r = self.http.request(method, path, json=body, params=query)
        except httpx.HTTPError as err:
            raise self._fail(err) from None
        return self._decode(r)

    def _decode(self, r: httpx.Response) -> Any:
        try:
            data = r.json()
        except ValueError:
            data = None
        if r.status_code >= 400:
            e = (data or {}).get("error") if isinstance(data, dict) else None
            if not isinstance(e, dict):
                raise ClientError(f"the server answered {r.status_code}", "server-error")
            raise ClientError(
                str(e.get("message")), str(e.get("code")), list(e.get("diagnostics") or [])
            )
        return data

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, **params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body if body is not None else {})

    def events(
        self, run_id: str, *, after: int = 0, node: str | None = None, retries: int = 5
    ) -> Iterator[Sse]:
        """A run's events until the run ends; reconnects after drops (no gap, no repeat)."""
        last = after
        failures = 0
        connected = False
        while True:
            headers = {"Last-Event-ID": str(last)} if last else {}
            params = {"node": node} if node else {}
            try:
                with self.http.stream(
                    "GET",
                    f"/runs/{run_id}/events",
                    headers=headers,
                    params=params,
                    timeout=httpx.Timeout(30.0, read=None),
                ) as r:
                    if r.status_code >= 400:
                        r.read()
                        self._decode(r)
                    connected = True
                    for ev in parse_sse(r.iter_lines()):
                        failures = 0
                        if ev.id is not None:
                            last = ev.id
                        yield ev
                        if ev.event == "end":
                            return
                        if ev.event == "dropped":
                            break  # reconnect from `last`
            except httpx.HTTPError as err:
                failures += 1
                if not connected or failures > retries:  # retry only a stream that was up
                    raise self._fail(err) from None
                time.sleep(min(0.2 * 2**failures, 3.0))


def parse_sse(lines: Iterator[str]) -> Iterator[Sse]:
    event, ident = "message", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                raw = "\n".join(data)
                try:
                    value = json.loads(raw)
                except ValueError:
                    value = raw
                yield Sse(event, value, ident)
            event, ident, data = "message", None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and value.isdigit():
            ident = int(value)


def client(args: Any) -> Client:
    return Client(args.server, args.token)
