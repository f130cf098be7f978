"""The runtime commands of `aobc`, run in-process: run, runs, approve, resume, cancel, replay,
patch propose."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from harness import HERE

from aobc.cli import main

WF = """
workflow cli_wf {
  input n: int = 2
  output result = done
  first = function "wf_functions:inc" { effect: pure, args: { x: inputs.n } }
  gate = approval { approvers: ["ops"], message: "go on with ${first.value}?" }
  done = function "wf_functions:record" { effect: effectful, args: { v: first.value } }
  first -> gate -[approved]-> done
}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def wf(tmp_path: Path) -> Path:
    path = tmp_path / "cli_wf.aob"
    path.write_text(WF)
    return path


def test_run_wait_approve_resume(
    tmp_path: Path, wf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "store")
    code, out, _ = run(
        capsys,
        "run",
        str(wf),
        "--inputs",
        '{"n": 5}',
        "--store",
        store,
        "--no-wait",
        "--path",
        str(HERE),
    )
    assert code == 0
    assert "approval t-" in out
    ticket = re.search(r"aobc approve (t-[0-9a-f]+)", out).group(1)  # type: ignore[union-attr]
    run_id = re.search(r"aobc resume (r-[0-9a-f]+)", out).group(1)  # type: ignore[union-attr]
    code, out, _ = run(capsys, "runs", "list", "--store", store)
    assert run_id in out
    assert "waiting" in out
    code, out, _ = run(
        capsys, "approve", ticket, "approve", "--reason", "fine", "--by", "me", "--store", store
    )
    assert code == 0
    assert "approved" in out
    code, out, _ = run(capsys, "resume", run_id, "--store", store)
    assert code == 0
    assert json.loads(out[out.index("{") :])["result"]["done"] == "done"
    code, out, _ = run(capsys, "runs", "show", run_id, "--json", "--store", store)
    shown = json.loads(out)
    assert shown["status"] == "succeeded"
    assert shown["tickets"][0]["by"] == "me"
    code, out, _ = run(
        capsys, "runs", "timeline", run_id, "--node", "gate", "--json", "--store", store
    )
    types = [json.loads(line)["type"] for line in out.splitlines()]
    assert types == ["ticket.opened", "ticket.decided", "node.succeeded"]
    code, out, _ = run(
        capsys,
        "replay",
        run_id,
        "--from",
        "done",
        "--mode",
        "freeze",
        "--output",
        "json",
        "--store",
        store,
    )
    assert code == 0
    report = json.loads(out.splitlines()[-1])
    assert report["divergence"][0]["node"] == "done"


def test_run_output_json_streams_events_then_the_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plain.aob"
    path.write_text(
        'workflow plain { output o = a\n a = function "wf_functions:inc" { effect: pure, args: { x: 1 } } }'
    )
    code, out, _ = run(
        capsys,
        "run",
        str(path),
        "--output",
        "json",
        "--store",
        str(tmp_path / "s"),
        "--path",
        str(HERE),
    )
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["type"] == "run.started"
    assert lines[-2]["type"] == "run.succeeded"
    assert lines[-1]["result"]["outputs"] == {"o": {"value": 2}}


def test_cancel_a_waiting_run(tmp_path: Path, wf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "store")
    _, out, _ = run(capsys, "run", str(wf), "--store", store, "--no-wait", "--path", str(HERE))
    run_id = re.search(r"aobc resume (r-[0-9a-f]+)", out).group(1)  # type: ignore[union-attr]
    code, out, _ = run(capsys, "cancel", run_id, "--reason", "not needed", "--store", store)
    assert code == 0
    assert "cancelled" in out
    code, out, _ = run(capsys, "runs", "show", run_id, "--json", "--store", store)
    assert json.loads(out)["status"] == "cancelled"
    code, _, err = run(capsys, "cancel", run_id, "--store", store)
    assert code == 1
    assert "already cancelled" in err


def test_patch_propose_to_a_waiting_run(
    tmp_path: Path, wf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "store")
    _, out, _ = run(capsys, "run", str(wf), "--store", store, "--no-wait", "--path", str(HERE))
    run_id = re.search(r"aobc resume (r-[0-9a-f]+)", out).group(1)  # type: ignore[union-attr]
    ticket = re.search(r"aobc approve (t-[0-9a-f]+)", out).group(1)  # type: ignore[union-attr]
    patch = tmp_path / "p.json"
    patch.write_text(
        json.dumps(
            {
                "reason": "log it",
                "operations": [
                    {
                        "op": "add",
                        "path": "/nodes/-",
                        "value": {
                            "id": "log",
                            "type": "function",
                            "effect": "effectful",
                            "fn": "wf_functions:record",
                        },
                    },
                    {"op": "add", "path": "/edges/-", "value": {"from": "done", "to": "log"}},
                ],
            }
        )
    )
    code, out, _ = run(
        capsys, "patch", "propose", run_id, str(patch), "--by", "dana", "--store", store
    )
    assert code == 0
    run(capsys, "approve", ticket, "approve", "--reason", "ok", "--store", store)
    code, _, _ = run(capsys, "resume", run_id, "--store", store)
    assert code == 0
    _, out, _ = run(capsys, "runs", "show", run_id, "--json", "--store", store)
    shown = json.loads(out)
    assert "log" in shown["done"]
    assert shown["patches"][0]["author"] == "dana"


def test_errors_are_clear_one_liners(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "store")
    code, _, err = run(capsys, "resume", "r-nope", "--store", store)
    assert code == 1
    assert "no run r-nope" in err
    code, _, err = run(capsys, "approve", "t-nope", "approve", "--reason", "x", "--store", store)
    assert code == 1
    assert "no open approval ticket" in err
    code, _, err = run(capsys, "run", str(tmp_path / "missing.aob"), "--store", store)
    assert code == 1
    assert "[io-error]" in err
    bad = tmp_path / "b.aob"
    bad.write_text('workflow b { a = function "wf_functions:inc" { effect: pure } }')
    code, _, err = run(capsys, "run", str(bad), "--inputs", "[1]", "--store", store)
    assert code == 1
    assert "--inputs must be a JSON object" in err


def test_durable_stores_are_asked_for_by_flag_or_environment(
    tmp_path: Path, wf: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aobc.runtime.stores import embedded

    opened: list[bool] = []
    real_open = embedded.EmbeddedStores.open

    def spy(store_dir: Path, *, durable: bool = False) -> embedded.EmbeddedStores:
        opened.append(durable)
        stores = real_open(store_dir, durable=durable)
        assert getattr(stores.events, "durable", None) is durable  # what SQLite was told
        return stores

    monkeypatch.setattr(embedded.EmbeddedStores, "open", staticmethod(spy))
    store = str(tmp_path / "store")
    common = ["--store", store, "--no-wait", "--path", str(HERE)]
    assert run(capsys, "run", str(wf), "--durable", *common)[0] == 0
    monkeypatch.setenv("AOBC_DURABLE", "yes")
    assert run(capsys, "run", str(wf), *common)[0] == 0
    monkeypatch.setenv("AOBC_DURABLE", "0")
    assert run(capsys, "run", str(wf), *common)[0] == 0
    assert opened == [True, True, False]
    monkeypatch.setenv("AOBC_DURABLE", "maybe")
    code, _out, err = run(capsys, "run", str(wf), *common)
    assert code == 1 and opened == [True, True, False]  # refused before opening anything
    assert "AOBC_DURABLE is 'maybe'" in err and "[store-config]" in err
