"""A real `aobc serve` in a subprocess, on 127.0.0.1 and a free port, for the API tests.

The server prints its address once it listens; `start` waits for that line, then polls
`/readyz` until it answers 200. Tokens for every role are made with the same functions
`aobc serve token add` uses, and written hashed to the tokens file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from aobc.api.auth import entry_toml, new_token, token_hash

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent

#: name -> (subject, roles, extra fields of the token entry)
TOKENS: dict[str, tuple[str, list[str], dict[str, Any]]] = {
    "viewer": ("vera@ops", ["viewer"], {}),
    "operator": ("otto@ops", ["operator"], {}),
    "approver": ("alice@support", ["approver"], {}),
    "finance": ("fred@finance", ["approver"], {"groups": ["finance"]}),
    "agent": (
        "triage-bot",
        ["agent"],
        {"budget": {"patches_per_run": 2, "ops_per_patch": 4}},
    ),
    "other": ("olga@other", ["operator", "approver"], {"namespaces": ["other"]}),
    "admin": ("root@ops", ["operator", "approver"], {"namespaces": ["*"]}),
}


def write_tokens(path: Path) -> dict[str, str]:
    tokens = {}
    entries = []
    for name, (subject, roles, extra) in TOKENS.items():
        token = tokens[name] = new_token()
        entries.append(entry_toml(subject, roles, token_hash(token), **extra))
    path.write_text("\n".join(entries), encoding="utf-8")
    return tokens


@dataclass
class Server:
    url: str
    store: Path | str
    proc: subprocess.Popen[str]
    tokens: dict[str, str]
    log: list[str] = field(default_factory=list)
    drain: threading.Thread | None = None

    def client(self, role: str | None = "admin", **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.drain is not None:
            self.drain.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def start(
    store: Path | str,  # a directory, or a postgres:// URL (the distributed runtime)
    tokens_file: Path,
    *args: str,
    env: dict[str, str] | None = None,
    tokens: dict[str, str] | None = None,
) -> Server:
    if tokens is None:
        tokens = write_tokens(tokens_file)
    cmd = [
        sys.executable, "-m", "aobc", "serve", "--port", "0", "--store", str(store),
        "--tokens", str(tokens_file), "--path", str(HERE), "--log-level", "info", *args,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    assert proc.stderr is not None
    log: list[str] = []
    url = None
    deadline = time.monotonic() + 30
    for line in proc.stderr:
        log.append(line)
        if "listening on " in line:
            url = line.rsplit("listening on ", 1)[1].strip()
            break
        if time.monotonic() > deadline:
            break
    if url is None:
        proc.kill()
        raise RuntimeError("aobc serve did not start:\n" + "".join(log))
    stream = proc.stderr

    def drain() -> None:  # keep reading, so a chatty server never blocks on a full pipe
        for line in stream:
            log.append(line)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    server = Server(url, store, proc, tokens, log, thread)
    with httpx.Client(base_url=url) as c:
        while True:
            try:
                if c.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("aobc serve never became ready:\n" + "".join(log))
            time.sleep(0.02)
    return server


#: A workflow that waits for a person, then makes one effect: what most API tests deploy.
GATE = """
workflow gate {
  output sent = send
  review = approval { approvers: ["ops"], timeout: 1h }
  send = function "apifns:record" { effect: effectful }
  review -[approved]-> send
}
"""


def deploy(c: httpx.Client, source: str, name: str, tag: str = "main", **extra: Any) -> str:
    r = c.post(
        "/workflows",
        json={"source": source, "filename": f"{name}.aob", "tags": [tag], **extra},
    )
    assert r.status_code in (200, 201), r.text
    return str(r.json()["hash"])


def start_run(c: httpx.Client, workflow: str, **body: Any) -> dict[str, Any]:
    r = c.post("/runs", json={"workflow": workflow, **body})
    assert r.status_code in (200, 201), r.text
    out: dict[str, Any] = r.json()
    return out


def wait_for(c: httpx.Client, run_id: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
    """Poll a run until its status is one of `statuses`."""
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = c.get(f"/runs/{run_id}").json()
        if run["status"] in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is {run['status']}, not {statuses}: {run}")
        time.sleep(0.02)


def sse(lines: Iterator[str]) -> Iterator[tuple[str, Any, int | None]]:
    """(event, data, id) of each server-sent event; comments come as ("comment", text, None)."""
    event, data, ident = "message", [], None
    for line in lines:
        if line.startswith(":"):
            yield "comment", line[1:].strip(), None
            continue
        if not line:
            if data:
                yield event, json.loads("\n".join(data)), ident
            event, data, ident = "message", [], None
            continue
        key, _, value = line.partition(": ")
        if key == "event":
            event = value
        elif key == "data":
            data.append(value)
        elif key == "id":
            ident = int(value)
