"""The operator's story, driven only through `aob` subprocesses against a real server:

start a run with an approval and an agent (the agent talks to a local server speaking the
OpenAI protocol, through aobc's real client), stream its logs, see the agent's patch
arrive and wait for a person, approve it, approve the ticket, watch the run complete, and
replay it from the agent node in freeze mode.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiserver import BIN, EXAMPLES, TOKENS, Server, start

from aobc.testing.fakellm import Answer, FakeOpenAI

REPLY = "Hi Dana, our engineers are restoring the missing rows; we will follow up within the hour."
DRAFT = {
    "output": {"reply": REPLY},
    "patch": {
        "reason": "data loss: loop in an engineer before anything is sent",
        "operations": [
            {
                "op": "add",
                "path": "/nodes/-",
                "value": {
                    "id": "loop_in_engineer",
                    "type": "function",
                    "effect": "effectful",
                    "fn": "handlers.support:notify_engineer",
                    "args": {"ticket": "${inputs.ticket}"},
                },
            },
            {"op": "add", "path": "/edges/-", "value": {"from": "draft", "to": "loop_in_engineer"}},
        ],
    },
}
REDRAFT = {"output": {"reply": REPLY.replace("within the hour", "by 17:00")}, "patch": None}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Server, FakeOpenAI, Path]]:
    outbox = tmp_path / "outbox.jsonl"
    with FakeOpenAI([Answer(DRAFT), Answer(REDRAFT)], api_key="sk-test") as llm:
        env = {
            "AOBC_OPENAI_BASE_URL": llm.url,
            "OPENAI_API_KEY": "sk-test",
            "AOBC_DEMO_OUTBOX": str(outbox),
        }
        server = start(
            tmp_path / "store", tmp_path / "tokens.toml", "--path", str(EXAMPLES), env=env
        )
        try:
            yield server, llm, outbox
        finally:
            server.stop()


def aob(server: Server, role: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AOB_SERVER": server.url, "AOB_TOKEN": server.tokens[role]}
    env.pop("NO_COLOR", None)
    out = subprocess.run(
        [str(BIN / "aob"), *args], capture_output=True, text=True, env=env, timeout=120
    )
    if ok:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    return out


class Stream:
    """`aob logs stream RUN --json` in the background, its lines in a queue."""

    def __init__(self, server: Server, run_id: str) -> None:
        env = {**os.environ, "AOB_SERVER": server.url, "AOB_TOKEN": server.tokens["viewer"]}
        self.proc = subprocess.Popen(
            [str(BIN / "aob"), "logs", "stream", run_id, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def until(self, etype: str, node: str | None = None, timeout: float = 60) -> dict[str, Any]:
        """The first event of this type (about this node) seen so far, or the next one."""

        def match(e: dict[str, Any]) -> bool:
            return e.get("type") == etype and (node is None or e.get("node") == node)

        for e in self.seen:
            if match(e):
                return e
        while True:
            e = self.lines.get(timeout=timeout)
            assert e is not None, f"the stream ended before {etype}: {self.seen[-5:]}"
            self.seen.append(e)
            if match(e):
                return e

    def finish(self) -> int:
        while (e := self.lines.get(timeout=60)) is not None:
            self.seen.append(e)
        code = self.proc.wait(30)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


def test_the_operator_story_through_aob(stack: tuple[Server, FakeOpenAI, Path]) -> None:
    server, llm, outbox = stack
    workflow = str(EXAMPLES / "support_triage.aob")
    assert "ok (support_triage" in aob(server, "viewer", "workflow", "validate", workflow).stdout

    # 1. start a run with an approval and an agent
    started = aob(
        server, "operator", "run", "start", workflow,
        "--inputs", str(EXAMPLES / "support_ticket.json"), "--json",
    )  # fmt: skip
    run_id = json.loads(started.stdout)["id"]
    assert "support_triage" in aob(server, "viewer", "workflow", "list").stdout

    # 2. stream its logs
    logs = Stream(server, run_id)
    assert logs.until("run.started")["name"] == "support_triage"

    # 3. the agent's patch arrives, and waits for a person (it adds an effectful node)
    held = logs.until("patch.held")
    assert held["source"] == "agent:draft"
    assert "loop_in_engineer" in held["reason"]
    pid = held["patch"]["id"]
    (pending,) = json.loads(aob(server, "viewer", "patch", "list", run_id, "--json").stdout)
    assert (pending["id"], pending["status"]) == (pid, "pending")
    shown = aob(server, "viewer", "patch", "show", pid[7:19]).stdout
    assert "loop_in_engineer" in shown and "agent draft" in shown
    assert len(llm.requests) == 1  # the real OpenAI client asked the local server once

    # 4. approve it (by its short id, as people type it)
    aob(server, "approver", "patch", "approve", pid[7:19], "--reason", "yes, loop them in")
    applied = logs.until("patch.applied")
    assert applied["approved_by"] == TOKENS["approver"][0]
    assert logs.until("node.succeeded", node="loop_in_engineer")

    # 5. approve the ticket
    ticket = logs.until("ticket.opened")["ticket"]
    listed = json.loads(aob(server, "viewer", "approvals", "list", "--json").stdout)
    assert ticket in {t["ticket"] for t in listed}
    decided = aob(server, "approver", "approve", ticket, "approve", "--reason", "reads well")
    assert f"{ticket}: approved by {TOKENS['approver'][0]}" in decided.stdout

    # 6. watch the run complete
    assert logs.until("run.succeeded")
    assert logs.finish() == 0
    assert logs.seen[-1] == {"end": {"status": "succeeded", "last_event_id": logs.seen[-2]["seq"]}}
    seqs = [e["seq"] for e in logs.seen if "seq" in e]
    assert seqs == list(range(1, len(seqs) + 1))  # every event, once, in order
    run = json.loads(aob(server, "viewer", "run", "show", run_id, "--json").stdout)
    assert run["status"] == "succeeded"
    assert run["outputs"]["draft"] == REPLY
    sent = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert [e["kind"] for e in sent if e["run"] == run_id] == ["page", "engineer", "reply"]

    # 7. replay from the agent node in freeze mode
    replayed = json.loads(
        aob(
            server, "operator", "replay", run_id, "--from", "draft", "--mode", "freeze", "--json"
        ).stdout
    )
    assert replayed["status"] == "succeeded"
    assert replayed["replay"]["of"] == run_id
    report = {d["node"]: d["status"] for d in replayed["replay"]["divergence"]}
    assert report["draft"] == "changed"  # the model answered differently this time
    assert "classify" not in report  # upstream of the agent: frozen, read from the CAS
    text = aob(server, "viewer", "run", "show", replayed["id"]).stdout
    assert f"replay of {run_id} from draft (freeze)" in text


def test_logs_in_text_have_no_colour_off_a_terminal(
    stack: tuple[Server, FakeOpenAI, Path],
) -> None:
    server, _, _ = stack
    workflow = str(EXAMPLES / "support_triage.aob")
    aob(server, "operator", "workflow", "deploy", workflow, "--tag", "main")
    started = aob(
        server, "operator", "run", "start", "support_triage",
        "--inputs", str(EXAMPLES / "support_ticket.json"), "--json",
    )  # fmt: skip
    run_id = json.loads(started.stdout)["id"]
    aob(server, "operator", "run", "cancel", run_id, "--reason", "test")
    out = aob(server, "viewer", "logs", "stream", run_id).stdout
    assert f"run {run_id}" in out
    assert "cancelled by otto@ops" in out
    assert "\x1b[" not in out
