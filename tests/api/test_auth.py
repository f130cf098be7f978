"""Every auth rule, through real HTTP: 401 without a valid token, 403 for a wrong role
(checked for every operation and role), namespaces, ticket groups, agent budgets, subjects
on decisions, hashed tokens re-read on change, and the guarded no-auth mode."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from apiserver import TOKENS, Server, deploy, start_run, wait_for

from aobc.api.auth import PERMISSIONS
from aobc.api.routes import ROUTES

GATE = """
workflow gate {
  output sent = send
  review = approval { approvers: ["support-leads"], timeout: 1h }
  send = function "apifns:record" { effect: effectful }
  review -[approved]-> send
}
"""
PROTECTED = [r for r in ROUTES if r.permission is not None]


def concrete(path: str) -> str:
    return re.sub(r"{[a-z_]+}", "x", path)


@pytest.fixture(scope="module")
def waiting(server: Server) -> dict[str, object]:
    with server.client("operator") as c:
        deploy(c, GATE, "gate")
        run = start_run(c, "gate")
        return wait_for(c, run["id"], "waiting")


@pytest.mark.parametrize("route", PROTECTED, ids=lambda r: f"{r.method} {r.path}")
def test_no_token_or_a_bad_token_is_401(server: Server, route: object) -> None:
    path = concrete(route.path)  # type: ignore[attr-defined]
    method = route.method  # type: ignore[attr-defined]
    for headers in ({}, {"Authorization": "Bearer aob_not-a-token"}, {"Authorization": "Basic x"}):
        with httpx.Client(base_url=server.url, headers=headers) as c:
            r = c.request(method, path, json={})
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("role", ["viewer", "operator", "approver", "agent"])
def test_a_wrong_role_is_403_and_a_right_one_is_not(server: Server, role: str) -> None:
    granted = PERMISSIONS[role] | ({"read-run"} if "read" in PERMISSIONS[role] else set())
    with server.client(role) as c:
        for route in PROTECTED:
            perms = (route.permission,) if isinstance(route.permission, str) else route.permission
            allowed = any(p in granted for p in perms)
            if route.path.endswith("/events") and allowed:
                continue  # a stream that stays open; its auth is the same code
            r = c.request(route.method, concrete(route.path), json={})
            if allowed:
                assert r.status_code not in (401, 403), (role, route.path, r.text)
            else:
                assert r.status_code == 403, (role, route.method, route.path, r.text)
                assert r.json()["error"]["code"] == "forbidden"


def test_operations_endpoints_need_no_token(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert c.get(path).status_code == 200, path


def test_decisions_are_recorded_with_the_token_subject(
    server: Server, waiting: dict[str, object]
) -> None:
    rid = waiting["id"]
    with server.client("approver") as c:
        (t,) = waiting["tickets"]  # type: ignore[misc]
        c.post(f"/approvals/{t['ticket']}", json={"decision": "approve", "reason": "lgtm"})
        wait_for(c, str(rid), "succeeded")
        events = c.get(f"/runs/{rid}/timeline").json()["events"]
    started = events[0]["labels"]
    decided = next(e for e in events if e["type"] == "ticket.decided")
    assert started["by"] == TOKENS["operator"][0]
    assert decided["by"] == TOKENS["approver"][0]


def test_namespaces_scope_tokens(server: Server, waiting: dict[str, object]) -> None:
    with server.client("other") as c:
        assert c.get(f"/runs/{waiting['id']}").status_code == 404
        assert waiting["id"] not in {r["id"] for r in c.get("/runs").json()["runs"]}
        r = c.post("/runs", json={"workflow": "gate"})  # in "default"
        assert r.status_code == 403
        d = c.post("/workflows", json={"source": GATE, "namespace": "other", "tags": ["main"]})
        assert d.status_code == 201
        run = start_run(c, "gate", namespace="other")
        assert run["namespace"] == "other"
    with server.client("admin") as c:
        assert c.get(f"/runs/{run['id']}").status_code == 200
    with server.client("viewer") as c:  # namespaces default to ["default"]
        assert c.get(f"/runs/{run['id']}").status_code == 404


def test_approver_groups_limit_which_tickets_a_token_decides(server: Server) -> None:
    with server.client("operator") as c:
        run = wait_for(c, start_run(c, "gate")["id"], "waiting")
    tid = run["tickets"][0]["ticket"]
    with server.client("finance") as c:  # groups = ["finance"]; the ticket asks support-leads
        r = c.post(f"/approvals/{tid}", json={"decision": "approve"})
        assert r.status_code == 403
        assert "support-leads" in r.json()["error"]["message"]


def test_an_agent_token_proposes_only_within_its_budget(server: Server) -> None:
    with server.client("operator") as c:
        rid = wait_for(c, start_run(c, "gate")["id"], "waiting")["id"]

    def node(i: int, kind: str = "function") -> dict[str, object]:
        value: dict[str, object] = {"id": f"n{i}", "type": "function", "effect": "pure",
                                    "fn": "apifns:echo"}  # fmt: skip
        if kind == "agent":
            value = {"id": f"n{i}", "type": "agent", "model": "m", "prompt": "p"}
        return {"op": "add", "path": "/nodes/-", "value": value}

    with server.client("agent") as c:
        too_big = [node(i) for i in range(5)]  # ops_per_patch = 4
        r = c.post(f"/runs/{rid}/patches", json=too_big)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "patch-budget")
        spawn = c.post(f"/runs/{rid}/patches", json=[node(9, "agent")])
        assert spawn.status_code == 422  # the runtime's spawn budget: this agent may spawn none
        assert spawn.json()["error"]["code"] == "spawn-budget"
        for i in range(2):  # patches_per_run = 2
            assert c.post(f"/runs/{rid}/patches", json=[node(i)]).status_code == 202
        r = c.post(f"/runs/{rid}/patches", json=[node(3)])
        assert (r.status_code, r.json()["error"]["code"]) == (403, "patch-budget")
        assert c.get(f"/runs/{rid}").status_code == 200  # agents read the runs they patch
        assert c.get("/runs").status_code == 403  # ... and nothing else


def test_tokens_are_stored_hashed_and_reread_when_the_file_changes(server: Server) -> None:
    tokens_file = server.store.parent / "tokens.toml"
    text = tokens_file.read_text()
    for token in server.tokens.values():
        assert token not in text
    added = subprocess.run(
        [sys.executable, "-m", "aobc", "serve", "token", "add", "--tokens", str(tokens_file),
         "--subject", "newbie@ops", "--role", "viewer"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    token = added.stdout.strip()
    assert token.startswith("aob_") and token not in tokens_file.read_text()
    hashed = subprocess.run(
        [sys.executable, "-m", "aobc", "serve", "token", "hash"],
        input=token, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert hashed.stdout.strip() in tokens_file.read_text()
    deadline = time.monotonic() + 10
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as c:
        while c.get("/runs").status_code == 401:  # re-read within a second of the change
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert c.post("/runs", json={}).status_code == 403


def test_no_auth_only_with_an_explicit_flag_and_only_on_loopback(tmp_path: Path) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aobc", "serve", "--store", str(tmp_path / "s"), *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    missing = serve()
    assert missing.returncode == 1
    assert "--tokens" in missing.stderr and "Traceback" not in missing.stderr
    wide = serve("--no-auth", "--host", "0.0.0.0")
    assert wide.returncode == 1
    assert "loopback" in wide.stderr
    bad = tmp_path / "tokens.toml"
    bad.write_text('[[token]]\nsubject = "x"\nrole = "root"\nhash = "sha256:00"\n')
    refused = serve("--tokens", str(bad))
    assert refused.returncode == 1
    assert "tokens-file" in refused.stderr and "Traceback" not in refused.stderr


def test_serve_refuses_a_store_url_it_cannot_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aobc.cli import main

    code = main(["serve", "--store", "redis://127.0.0.1/0", "--no-auth"])
    err = capsys.readouterr().err
    assert code == 1
    assert "redis://" in err and "[store-config]" in err and "Traceback" not in err
    # A Postgres URL is the distributed runtime, which needs its S3 store too.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOBC_")}
    done = subprocess.run(
        [sys.executable, "-m", "aobc", "serve", "--store", "postgres://127.0.0.1/aobc",
         "--no-auth"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "s3" in done.stderr and "[store-config]" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_held_human_patch_needs_a_second_person(tmp_path: Path) -> None:
    from apiserver import start

    strict = start(tmp_path / "store", tmp_path / "tokens.toml", "--review-human")
    try:
        with strict.client("admin") as admin, strict.client("approver") as approver:
            deploy(admin, GATE, "gate")
            rid = wait_for(admin, start_run(admin, "gate")["id"], "waiting")["id"]
            node = {"id": "note", "type": "function", "fn": "apifns:echo", "effect": "pure"}
            r = admin.post(
                f"/runs/{rid}/patches", json=[{"op": "add", "path": "/nodes/-", "value": node}]
            )
            assert r.status_code == 202, r.text
            pid = r.json()["id"]
            assert "human" in r.json()["review"]
            mine = admin.post(f"/patches/{pid}/approve", json={"reason": "mine, fine"})
            assert mine.status_code == 403, mine.text
            assert "another approver" in mine.json()["error"]["message"]
            theirs = approver.post(f"/patches/{pid}/approve", json={"reason": "ok"})
            assert theirs.status_code == 200, theirs.text
            deadline = time.monotonic() + 20
            while admin.get(f"/patches/{pid}").json()["status"] != "applied":
                assert time.monotonic() < deadline
                time.sleep(0.02)
    finally:
        strict.stop()
