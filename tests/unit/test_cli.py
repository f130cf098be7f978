"""The `aobc` command, run in-process through `main(argv)`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aobc.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LEADS = str(EXAMPLES / "lead_enrichment.aob")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_compile_is_byte_identical(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.aobir", tmp_path / "b.aobir"
    assert run(capsys, "compile", LEADS, "-o", str(a))[0] == 0
    assert run(capsys, "compile", LEADS, "-o", str(b))[0] == 0
    assert a.read_bytes() == b.read_bytes()
    code, out, _ = run(capsys, "show", str(a))
    assert code == 0
    assert out.startswith("aobir format 1")
    assert "workflow lead_enrichment" in out


def test_output_to_a_pipe_writes_in_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o /dev/null` or `-o fifo` must not replace the device with a renamed temp file."""
    import os
    import stat
    import threading

    fifo = tmp_path / "out.pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    # a daemon, so that a regression (the pipe replaced, the reader never fed) fails the
    # assertions below instead of hanging the suite
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert run(capsys, "compile", LEADS, "-o", str(fifo))[0] == 0
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    reader.join(timeout=30)
    assert got[0].startswith(b"AOBIR\x00")
    assert not [p for p in tmp_path.iterdir() if p.name != "out.pipe"]  # no temp file left


@pytest.mark.parametrize("emit", ["json", "dot", "mermaid", "ir-text"])
def test_emit_formats(emit: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "compile", LEADS, "--emit", emit, "-o", "-")
    assert code == 0
    if emit == "json":
        assert json.loads(out)["name"] == "lead_enrichment"
    elif emit == "dot":
        assert out.startswith("digraph")
    elif emit == "mermaid":
        assert "flowchart TD" in out
    else:
        assert "aobir format 1" in out


@pytest.mark.parametrize("level", ["-O0", "-O1", "-O2"])
def test_opt_levels(level: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "compile", LEADS, level, "-o", str(tmp_path / "x.aobir"))[0] == 0


def test_unknown_pass_and_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "compile", LEADS, "--passes", "verify,prune-deed")
    assert code == 1
    assert "[unknown-pass]" in err
    assert 'did you mean "prune-dead"' in err
    assert run(capsys, "compile")[0] == 2
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys, "compile", LEADS, "-O", "7")[0] == 2


def test_validate_reports_and_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "validate", LEADS)
    assert code == 0
    assert "ok" in out
    bad = tmp_path / "bad.aob"
    bad.write_text('workflow w {\n  a = function "m:f" { effect: pure }\n  a -> b\n}\n')
    code, out, _ = run(capsys, "validate", str(bad), "--output", "json")
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    assert records[0]["code"] == "undefined-node"
    assert (records[0]["line"], records[0]["column"]) == (3, 8)
    code, out, _ = run(capsys, "validate", str(bad))
    assert "bad.aob:3:8: error:" in out
    assert "^" in out


def test_missing_and_unreadable_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "compile", str(tmp_path / "nope.aob"))
    assert code == 1
    assert "[io-error]" in err
    binary = tmp_path / "bin.aob"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = run(capsys, "validate", str(binary))
    assert code == 1


def test_show_refuses_tampered_ir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ir = tmp_path / "x.aobir"
    run(capsys, "compile", LEADS, "-o", str(ir))
    data = bytearray(ir.read_bytes())
    data[-5] ^= 0xFF
    ir.write_bytes(bytes(data))
    code, _, err = run(capsys, "show", str(ir))
    assert code == 1
    assert "[ir-checksum]" in err
    ir.write_bytes(bytes(data[:100]))
    assert "[ir-truncated]" in run(capsys, "show", str(ir))[2]


def test_fmt_round_trip_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, dsl, _ = run(capsys, "fmt", LEADS)
    assert code == 0
    canonical = tmp_path / "c.aob"
    canonical.write_text(dsl)
    assert run(capsys, "fmt", str(canonical), "--check")[0] == 0
    assert run(capsys, "fmt", LEADS, "--check")[0] == 1
    code, js, _ = run(capsys, "fmt", LEADS, "--json")
    as_json = tmp_path / "c.json"
    as_json.write_text(js)
    assert run(capsys, "fmt", str(as_json))[1] == dsl  # DSL -> JSON -> DSL


def test_patch_apply_and_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vision = EXAMPLES / "vision"
    code, out, _ = run(
        capsys, "patch", "apply", str(vision / "base.json"), str(vision / "patch.json")
    )
    assert code == 0
    assert json.loads(out) == json.loads((vision / "materialized.json").read_text())
    code, ops, _ = run(
        capsys, "patch", "diff", str(vision / "base.json"), str(vision / "materialized.json")
    )
    assert code == 0
    patch = tmp_path / "p.json"
    patch.write_text(ops)
    assert json.loads(
        run(capsys, "patch", "apply", str(vision / "base.json"), str(patch))[1]
    ) == json.loads(out)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"op": "remove", "path": "/nodes/9"}]')
    code, _, err = run(capsys, "patch", "apply", str(vision / "base.json"), str(bad))
    assert code == 1
    assert "[patch-index]" in err


def test_compile_with_overlays_and_rollback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patch = {
        "author_kind": "human",
        "author": "ops",
        "reason": "cap the CRM call",
        "operations": [{"op": "replace", "path": "/nodes/0/timeout", "value": "3s"}],
    }
    p = tmp_path / "cap.json"
    p.write_text(json.dumps(patch))
    code, out, _ = run(capsys, "compile", LEADS, "--patch", str(p), "--emit", "json", "-o", "-")
    assert code == 0
    assert json.loads(out)["nodes"][0]["timeout"] == "3s"
    code, out, _ = run(
        capsys,
        "compile",
        LEADS,
        "--patch",
        str(p),
        "--rollback",
        "cap.json",
        "--emit",
        "json",
        "-o",
        "-",
    )
    assert code == 0
    assert json.loads(out)["nodes"][0]["timeout"] == "10s"


def test_instrumentation_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_ir = str(tmp_path / "x.aobir")
    code, _, err = run(
        capsys,
        "compile",
        LEADS,
        "--time-passes",
        "--print-ir-after-all",
        "--verify-each",
        "-o",
        out_ir,
    )
    assert code == 0
    assert "pass timings" in err
    assert "IR after verify" in err
    code, _, err = run(capsys, "compile", LEADS, "--opt-bisect-limit=0", "-o", out_ir)
    assert code == 0
    assert "BISECT: NOT running pass (1) prune-dead" in err


def test_passes_listing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "passes", "--json")
    assert code == 0
    listing = json.loads(out)
    names = {p["name"] for p in listing["passes"]}
    assert {"verify", "prune-dead"} <= names
    assert listing["presets"]["O0"] == "verify"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.startswith("aobc ")
