"""The HTTP API through real HTTP against a real `aobc serve`: workflows, runs, patches,
approvals, operations endpoints, and the OpenAPI document against the served routes."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
import pytest
from apiserver import Server, deploy, start_run, wait_for

GATE = """
workflow gate {
  input who: str = "world"
  output sent = send
  prep = function "apifns:echo" { effect: pure, args: { who: inputs.who } }
  review = approval { approvers: ["support-leads"], timeout: 1h, message: "send to ${inputs.who}?" }
  send = function "apifns:record" { effect: effectful }
  prep -> review -[approved]-> send
}
"""

EFFECTFUL_NODE = {
    "op": "add",
    "path": "/nodes/-",
    "value": {"id": "notify", "type": "function", "effect": "effectful", "fn": "apifns:record"},
}
PURE_NODE = {
    "op": "add",
    "path": "/nodes/-",
    "value": {"id": "note", "type": "function", "effect": "pure", "fn": "apifns:echo"},
}


def edge(src: str, dst: str) -> dict[str, Any]:
    return {"op": "add", "path": "/edges/-", "value": {"from": src, "to": dst}}


@pytest.fixture(scope="module")
def gate(server: Server) -> str:
    with server.client("operator") as c:
        return deploy(c, GATE, "gate", "main")


def waiting_run(server: Server, gate: str, **body: Any) -> dict[str, Any]:
    with server.client("operator") as c:
        run = start_run(c, "gate", **body)
        return wait_for(c, run["id"], "waiting")


def ticket_of(run: dict[str, Any]) -> str:
    (t,) = [t for t in run["tickets"] if t["status"] == "open"]
    return str(t["ticket"])


# --- operations ----------------------------------------------------------------------------


def test_health_ready_and_metrics(server: Server) -> None:
    with server.client(None) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        text = c.get("/metrics").text
    for family in (
        "aobc_runs",
        "aobc_node_duration_seconds",
        "aobc_run_queue_depth",
        "aobc_patch_decisions_total",
        "aobc_sse_subscribers",
    ):
        assert f"# TYPE {family.removesuffix('_total')}" in text, family


def test_the_openapi_document_matches_the_served_routes(server: Server) -> None:
    with server.client("admin") as c:
        spec = c.get("/openapi.json").json()
        assert spec["openapi"].startswith("3.1")
        served = 0
        for path, ops in spec["paths"].items():
            concrete = re.sub(r"{[a-z_]+}", "x", path)
            for method in ops:
                if path.endswith("/events"):
                    continue  # a stream: checked in test_sse.py
                r = c.request(method.upper(), concrete, json={})
                # Every documented operation exists: never the router's 404 or 405.
                assert r.status_code != 405, (method, path)
                if r.status_code == 404:
                    assert r.json()["error"]["message"] != "no such endpoint", (method, path)
                assert str(r.status_code) in ops[method]["responses"], (method, path, r.text)
                served += 1
        assert served >= 20
        r = c.get("/no/such/thing")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not-found"


def test_methods_and_parameters_outside_the_spec_are_refused(server: Server) -> None:
    with server.client("admin") as c:
        spec = c.get("/openapi.json").json()
        for path in ("/runs", "/workflows", "/runs/{run_id}/patches", "/healthz"):
            r = c.request("DELETE", path.replace("{run_id}", "r-x"))
            assert r.status_code == 405, path
            allowed = {m.strip() for m in r.headers["allow"].split(",")} - {"HEAD"}
            assert allowed == {m.upper() for m in spec["paths"][path]}, path
        # A mistyped filter must not answer with everything, unfiltered.
        for query in ("stauts=failed", "status=finished", "limit=0", "limit=x"):
            r = c.get(f"/runs?{query}")
            assert r.status_code == 400, query
            assert r.json()["error"]["code"] == "bad-request"
        assert "stauts" in c.get("/runs?stauts=failed").json()["error"]["message"]
        assert c.get("/runs?status=failed&limit=5").status_code == 200
        # Text no store can hold (NUL: PostgreSQL refuses it; a lone surrogate is not UTF-8).
        r = c.put("/workflows/w/tags/t", json={"hash": "a" * 64, "namespace": "x\u0000y"})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["diagnostics"][0]["pointer"] == "/namespace"
        bad = c.put(
            "/workflows/w/tags/t",
            content=b'{"hash": "\\ud800"}',
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == 422, bad.text
        assert c.get("/runs/r-%00").status_code == 400


def test_metrics_count_runs_by_state_and_node_latency(server: Server, gate: str) -> None:
    run = waiting_run(server, gate)
    with server.client("approver") as c:
        c.post(f"/approvals/{ticket_of(run)}", json={"decision": "approve", "reason": "ok"})
        wait_for(c, run["id"], "succeeded")
        text = c.get("/metrics").text
    assert re.search(r'aobc_runs\{namespace="default",state="succeeded"\} [1-9]', text)
    assert 'aobc_node_duration_seconds_count{node="send",workflow="gate"}' in text
    assert 'aobc_ticket_decisions_total{decision="approved"}' in text


# --- workflows ----------------------------------------------------------------------------


def test_deploy_is_idempotent_and_tags_resolve_to_the_artifact(server: Server) -> None:
    source = GATE.replace("workflow gate", "workflow tagged")
    with server.client("operator") as c:
        first = c.post("/workflows", json={"source": source, "filename": "t.aob", "tags": ["v1"]})
        assert first.status_code == 201
        digest = first.json()["hash"]
        again = c.post("/workflows", json={"source": source, "filename": "t.aob", "tags": ["main"]})
        assert again.status_code == 200
        assert again.json()["hash"] == digest
        assert again.json()["tags"] == {"main": digest, "v1": digest}
        v2 = source.replace('"world"', '"moon"')
        second = c.post("/workflows", json={"source": v2, "filename": "t.aob", "tags": ["v2"]})
        other = second.json()["hash"]
        assert other != digest
        listed = {w["name"]: w for w in c.get("/workflows").json()["workflows"]}
        assert listed["tagged"]["tags"] == {"main": digest, "v1": digest, "v2": other}
        moved = c.put("/workflows/tagged/tags/main", json={"hash": f"sha256:{other}"})
        assert moved.status_code == 200
        run = start_run(c, "tagged")  # main now names v2
        assert run["deployment"] == other
        assert run["inputs"] == {"who": "moon"}
        detail = c.get("/workflows/tagged").json()
        assert detail["tags"]["main"] == other
        assert len(detail["deployments"]) == 2
        assert c.put("/workflows/tagged/tags/x", json={"hash": "0" * 64}).status_code == 404


def test_deploy_a_json_document_and_a_compiled_ir(server: Server) -> None:
    from aobc.backend.aobir import encode
    from aobc.backend.lower import lower
    from aobc.frontend import load_text

    ir = lower(load_text(GATE.replace("workflow gate", "workflow compiled"), "c.aob"))
    doc = {
        "name": "docflow",
        "outputs": {"echo": "a"},
        "nodes": [{"id": "a", "type": "function", "effect": "pure", "fn": "apifns:echo"}],
        "edges": [],
    }
    with server.client("operator") as c:
        r = c.post(
            "/workflows", json={"ir": base64.b64encode(encode(ir)).decode(), "tags": ["main"]}
        )
        assert r.status_code == 201, r.text
        assert r.json()["name"] == "compiled"
        r = c.post("/workflows", json={"document": doc, "tags": ["main"]})
        assert r.status_code == 201, r.text
        run = start_run(c, "docflow")
        assert wait_for(c, run["id"], "succeeded")["nodes"]["done"].keys() == {"a"}
        bad = c.post("/workflows", json={"ir": base64.b64encode(b"not ir").decode()})
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "ir-format"


def test_an_invalid_workflow_is_refused_with_located_diagnostics(server: Server) -> None:
    bad = 'workflow w {\n  a = function "apifns:echo" { effect: pure }\n  a -> b\n}\n'
    with server.client("operator") as c:
        r = c.post("/workflows", json={"source": bad, "filename": "w.aob"})
        assert r.status_code == 422
        err = r.json()["error"]
        assert err["code"] == "undefined-node"
        (d,) = [d for d in err["diagnostics"] if d["code"] == "undefined-node"]
        assert (d["file"], d["line"]) == ("w.aob", 3)
        v = c.post("/workflows/validate", json={"source": bad, "filename": "w.aob"}).json()
        assert v["ok"] is False
        assert v["diagnostics"][0]["code"] == "undefined-node"
        ok = c.post("/workflows/validate", json={"source": GATE, "filename": "g.aob"}).json()
        assert ok["ok"] is True
        assert ok["workflow"]["nodes"] == 3
        assert "bad" not in {w["name"] for w in c.get("/workflows").json()["workflows"]}


# --- runs ----------------------------------------------------------------------------------


def test_start_get_list_and_the_idempotency_key(server: Server, gate: str) -> None:
    with server.client("operator") as c:
        first = c.post(
            "/runs",
            json={"workflow": "gate", "inputs": {"who": "ann"}, "idempotency_key": "k-1",
                  "priority": "high"},
        )  # fmt: skip
        assert first.status_code == 201
        run = first.json()
        assert (run["started_by"], run["priority"]) == ("otto@ops", "high")
        again = c.post("/runs", json={"workflow": "gate", "idempotency_key": "k-1"})
        assert again.status_code == 200
        assert again.json()["id"] == run["id"]
        by_hash = c.post("/runs", json={"hash": gate, "inputs": {"who": "bob"}})
        assert by_hash.status_code == 201
        wait_for(c, run["id"], "waiting")
        listed = c.get("/runs", params={"workflow": "gate", "status": "waiting"}).json()["runs"]
        assert run["id"] in {r["id"] for r in listed}
        assert all(r["status"] == "waiting" and r["workflow"] == "gate" for r in listed)
        shown = c.get(f"/runs/{run['id']}").json()
        assert shown["inputs"] == {"who": "ann"}
        assert shown["nodes"]["done"].keys() == {"prep"}
        assert shown["tickets"][0]["message"] == "send to ann?"


def test_start_refusals(server: Server, gate: str) -> None:
    with server.client("operator") as c:
        r = c.post("/runs", json={"workflow": "gate", "inputs": {"who": 3, "extra": 1}})
        assert r.status_code == 422
        messages = [d["message"] for d in r.json()["error"]["diagnostics"]]
        assert any('"extra" is not declared' in m for m in messages)
        assert any('"who" must be str' in m for m in messages)
        assert c.post("/runs", json={"workflow": "gate", "tag": "nope"}).status_code == 404
        assert c.post("/runs", json={"workflow": "gate", "priority": "urgent"}).status_code == 422
        assert c.post("/runs", content=b"{not json").status_code == 400


def test_cancel_a_waiting_run_records_who(server: Server, gate: str) -> None:
    run = waiting_run(server, gate)
    with server.client("operator") as c:
        r = c.post(f"/runs/{run['id']}/cancel", json={"reason": "not needed"})
        assert r.status_code == 202
        assert r.json()["by"] == "otto@ops"
        done = wait_for(c, run["id"], "cancelled")
        assert done["cancel"]["by"] == "otto@ops"
        assert c.post(f"/runs/{run['id']}/cancel", json={}).status_code == 409


def test_timeline_pages_and_filters_by_node(server: Server, gate: str) -> None:
    run = waiting_run(server, gate)
    with server.client("viewer") as c:
        whole = c.get(f"/runs/{run['id']}/timeline").json()
        seqs = [e["seq"] for e in whole["events"]]
        assert seqs == list(range(1, len(seqs) + 1))
        assert whole["events"][0]["type"] == "run.started"
        page = c.get(f"/runs/{run['id']}/timeline", params={"after": 1, "limit": 2}).json()
        assert [e["seq"] for e in page["events"]] == [2, 3]
        assert page["next"] == 3
        review = c.get(f"/runs/{run['id']}/timeline", params={"node": "review"}).json()
        assert {e["node"] for e in review["events"]} == {"review"}
        assert "ticket.opened" in {e["type"] for e in review["events"]}


def test_replay_from_a_node_in_freeze_mode(server: Server, gate: str) -> None:
    run = waiting_run(server, gate)
    with server.client("admin") as c:
        r = c.post(f"/runs/{run['id']}/replay", json={"from": "send"})
        assert r.status_code == 422  # not finished yet
        c.post(f"/approvals/{ticket_of(run)}", json={"decision": "approve"})
        wait_for(c, run["id"], "succeeded")
        r = c.post(f"/runs/{run['id']}/replay", json={"from": "send", "mode": "freeze"})
        assert r.status_code == 201
        replay = wait_for(c, r.json()["id"], "succeeded")
        assert replay["parent"] == run["id"]
        assert replay["replay"]["mode"] == "freeze"
        assert [d["node"] for d in replay["replay"]["divergence"]] == ["send"]
        frozen = c.get(f"/runs/{replay['id']}/timeline", params={"node": "prep"}).json()
        assert frozen["events"][-1]["frozen"] is True
        bad = c.post(f"/runs/{run['id']}/replay", json={"from": "nope"})
        assert bad.status_code == 422
        assert "no node" in bad.json()["error"]["message"]


# --- patches ----------------------------------------------------------------------------------


def test_an_invalid_patch_gets_422_with_diagnostics_and_changes_nothing(
    server: Server, gate: str
) -> None:
    run = waiting_run(server, gate)
    rid = run["id"]
    with server.client("operator") as c:
        before = c.get(f"/runs/{rid}/timeline").json()["events"]
        cases = [
            [{"op": "remove", "path": "/nodes/9"}],  # names nothing
            [{"op": "add", "path": "/edges/-", "value": {"from": "prep", "to": "ghost"}}],
            [{"op": "replace", "path": "/nodes/0/fn", "value": "apifns:record"}],  # prep ran
            {"operations": "not a list"},
        ]
        for patch in cases:
            r = c.post(f"/runs/{rid}/patches", json=patch)
            assert r.status_code == 422, (patch, r.text)
            assert r.json()["error"]["diagnostics"], patch
        codes = {c.post(f"/runs/{rid}/patches", json=p).json()["error"]["code"] for p in cases[:3]}
        assert codes == {"patch-index", "undefined-node", "patch-touches-executed"}
        after = c.get(f"/runs/{rid}").json()
        assert c.get(f"/runs/{rid}/timeline").json()["events"] == before
        assert after["version"] == run["version"]
        assert c.get(f"/runs/{rid}/patches").json()["patches"] == []


def test_a_human_patch_applies_to_the_live_run(server: Server, gate: str) -> None:
    run = waiting_run(server, gate)
    rid = run["id"]
    with server.client("operator") as c:
        body = {
            "reason": "note it",
            "author": "mallory",
            "operations": [PURE_NODE, edge("prep", "note")],
        }
        r = c.post(f"/runs/{rid}/patches", json=body)
        assert r.status_code == 202, r.text
        patch = r.json()
        assert (patch["author_kind"], patch["author"]) == ("human", "otto@ops")  # not "mallory"
        assert patch["review"] is None
        deadline_run = wait_for_patch(c, patch["id"], "applied")
        assert deadline_run["detail"]["version"] != run["version"]
        shown = c.get(f"/runs/{rid}").json()
        assert shown["patches"][0]["author"] == "otto@ops"
        assert "note" in wait_for_node(c, rid, "note")
        doc = c.get(f"/runs/{rid}/workflow").json()
        assert "note" in {n["id"] for n in doc["document"]["nodes"]}
        assert c.get(f"/patches/{patch['id'][7:17]}").json()["id"] == patch["id"]  # by prefix


def wait_for_patch(c: httpx.Client, pid: str, status: str) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 20
    while True:
        p: dict[str, Any] = c.get(f"/patches/{pid}").json()
        if p["status"] == status:
            return p
        assert time.monotonic() < deadline, p
        time.sleep(0.02)


def wait_for_node(c: httpx.Client, rid: str, node: str) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 20
    while True:
        done: dict[str, Any] = c.get(f"/runs/{rid}").json()["nodes"]["done"]
        if node in done:
            return done
        assert time.monotonic() < deadline, done
        time.sleep(0.02)


def test_agent_patches_adding_effects_wait_for_an_approver(server: Server, gate: str) -> None:
    run = waiting_run(server, gate)
    rid = run["id"]
    with server.client("agent") as agent, server.client("approver") as approver:
        r = agent.post(f"/runs/{rid}/patches", json=[EFFECTFUL_NODE, edge("prep", "notify")])
        assert r.status_code == 202, r.text
        held = r.json()
        assert held["author_kind"] == "agent"
        assert "effectful" in held["review"]
        wait_for_patch(approver, held["id"], "pending")
        assert "notify" not in approver.get(f"/runs/{rid}").json()["nodes"]["done"]
        pending = approver.get("/patches", params={"status": "pending"}).json()["patches"]
        assert held["id"] in {p["id"] for p in pending}
        r = approver.post(f"/patches/{held['id']}/approve", json={"reason": "fine"})
        assert r.status_code == 200, r.text
        applied = wait_for_patch(approver, held["id"], "applied")
        assert applied["detail"]["approval"] == {"by": "alice@support", "reason": "fine"}
        wait_for_node(approver, rid, "notify")
        again = approver.post(f"/patches/{held['id']}/approve", json={})
        assert again.status_code == 409
        # A second held patch, rejected: it never changes the run.
        n2 = {**EFFECTFUL_NODE, "value": {**EFFECTFUL_NODE["value"], "id": "n2"}}
        r = agent.post(f"/runs/{rid}/patches", json=[n2, edge("prep", "n2")])
        assert r.status_code == 202, r.text
        second = r.json()
        wait_for_patch(approver, second["id"], "pending")
        r = approver.post(f"/patches/{second['id']}/reject", json={"reason": "no"})
        assert r.json()["status"] == "rejected"
        types = [e["type"] for e in approver.get(f"/runs/{rid}/timeline").json()["events"]]
        assert types.count("patch.held") == 2
        assert types.count("patch.approved") == types.count("patch.rejected") == 1
        approver.post(f"/approvals/{ticket_of(run)}", json={"decision": "approve"})
        done = wait_for(approver, rid, "succeeded")
        assert "n2" not in done["nodes"]["done"]
        metrics = approver.get("/metrics").text
    for decision in ("held", "approved", "rejected", "applied"):
        line = f'aobc_patch_decisions_total{{author_kind="agent",decision="{decision}"}}'
        assert re.search(re.escape(line) + r" [1-9]", metrics), decision


# --- approvals -----------------------------------------------------------------------------


def test_approvals_list_and_decide_with_reason_and_subject(server: Server, gate: str) -> None:
    run = waiting_run(server, gate, inputs={"who": "dana"})
    tid = ticket_of(run)
    with server.client("approver") as c:
        open_ = {t["ticket"]: t for t in c.get("/approvals").json()["tickets"]}
        assert open_[tid]["run"] == run["id"]
        assert open_[tid]["message"] == "send to dana?"
        r = c.post(f"/approvals/{tid}", json={"decision": "reject", "reason": "wrong person"})
        assert r.status_code == 200
        assert (r.json()["status"], r.json()["by"]) == ("rejected", "alice@support")
        done = wait_for(c, run["id"], "succeeded")
        assert done["outputs"] == {"sent": None}
        (decided,) = [
            e
            for e in c.get(f"/runs/{run['id']}/timeline").json()["events"]
            if e["type"] == "ticket.decided"
        ]
        assert (decided["by"], decided["reason"]) == ("alice@support", "wrong person")
        assert tid not in {t["ticket"] for t in c.get("/approvals").json()["tickets"]}
        assert c.post(f"/approvals/{tid}", json={"decision": "approve"}).status_code == 409
        assert c.post("/approvals/t-nope", json={"decision": "approve"}).status_code == 404


def test_small_responses_are_not_held_back_by_nagle(server: Server) -> None:
    """Each response is written in two parts (head, body): unless the server's connections
    set TCP_NODELAY, the body waits for the client's delayed ACK, ~40 ms per request."""
    import socket
    import statistics
    import time
    from urllib.parse import urlsplit

    parts = urlsplit(server.url)
    request = f"GET /healthz HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    took = []
    with socket.create_connection((parts.hostname, parts.port)) as s:
        for _ in range(25):  # one keep-alive connection, one request at a time
            began = time.perf_counter()
            s.sendall(request)
            data = b""
            while not data.endswith(b'{"status":"ok"}'):
                chunk = s.recv(4096)
                assert chunk, data
                data += chunk
            took.append(time.perf_counter() - began)
    assert statistics.median(took) < 0.02, took
