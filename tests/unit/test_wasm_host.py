"""The WebAssembly plugin host, driven by the hand-written WAT fixtures in wasm_passes/fixtures.

Every way a plugin can misbehave must end as a coded diagnostic naming it, an error by
default or a warning under on-error=warn, and never as a crash of the host.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aobc.cli import main
from aobc.diagnostics import Diagnostic
from aobc.errors import FrontendError, PassError
from aobc.frontend import load_text
from aobc.frontend.overlay import Overlay
from aobc.passes.pipeline import PassPipeline
from aobc.policy import Policy
from aobc.wasm import Limits, PluginFailure, load_plugin
from aobc.wasm.abi import pack, unpack
from aobc.wasm.cache import ModuleCache
from aobc.wasm.host import forget_plugins, runtime_cache

FIXTURES = Path(__file__).resolve().parents[2] / "wasm_passes" / "fixtures"

WORKFLOW = """
workflow w {
  output r = b.value
  send = function "m:send" { effect: effectful }
  a = function "m:a" { effect: pure }
  b = function "m:b" { effect: pure, args: { x: a.value } }
  a -> b
}
"""
LIMITS = "fuel=100000000,timeout-ms=5000,memory-mb=16,output-kb=64"


def fixture(name: str) -> str:
    return str(FIXTURES / f"{name}.wat")


def compile_with(pipeline: str, policy: Policy | None = None) -> tuple[bool, list[Diagnostic]]:
    wf = load_text(WORKFLOW, "w.aob")
    policy = policy or Policy()
    result = PassPipeline.parse(pipeline).run(Overlay(wf, policy), policy)
    return result.ok, result.diagnostics


def failure(name: str, limits: str = LIMITS) -> Diagnostic:
    ok, diags = compile_with(f"verify,wasm{{path={fixture(name)},{limits}}},verify")
    assert not ok
    (d,) = [d for d in diags if d.is_error]
    return d


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        ("loop", "wasm-fuel", "ran out of fuel"),
        ("memory_hog", "wasm-memory", "16 MiB memory cap"),
        ("trap", "wasm-trap", "unreachable"),
        ("garbage", "wasm-output", "not JSON"),
        ("huge_output", "wasm-output", "the cap is 65,536"),
        ("error", "wasm-error", "graph has no nodes I understand"),
        ("cycle", "wasm-patch", "refused"),
        ("remove_effect", "wasm-effect", 'removes effectful node "send"'),
    ],
)
def test_each_failure_is_a_coded_diagnostic_naming_the_plugin(
    name: str, code: str, words: str
) -> None:
    d = failure(name)
    assert d.code is not None and d.code.name == code
    assert words in d.message
    assert f"({fixture(name)})" in d.message  # names the plugin and its file


def test_a_cycle_is_reported_by_the_verifier_under_the_plugin() -> None:
    d = failure("cycle")
    assert [n.code.name for n in d.notes if n.code] == ["cycle"]
    assert "a -> b -> a" in d.notes[0].message


def test_an_infinite_loop_with_fuel_to_spare_hits_the_wall_time_deadline() -> None:
    d = failure("loop", "fuel=1000000000000000,timeout-ms=200")
    assert d.code is not None and d.code.name == "wasm-timeout"
    assert "200 ms" in d.message


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("wrong_abi", "speaks ABI version 2"),
        ("missing_export", 'does not export "run"'),
        ("imports", "imports env.read_file"),
    ],
)
def test_modules_that_break_the_abi_are_refused_before_anything_runs(name: str, words: str) -> None:
    with pytest.raises(PassError) as err:
        PassPipeline.parse(f"wasm{{path={fixture(name)}}}")
    (d,) = err.value.diagnostics
    assert d.code is not None and d.code.name == "wasm-abi" and words in d.message


def test_on_error_warn_goes_on_without_the_patch() -> None:
    ok, diags = compile_with(f"verify,wasm{{path={fixture('trap')},on-error=warn}},verify")
    assert ok
    (d,) = diags
    assert not d.is_error and d.code is not None and d.code.name == "wasm-trap"
    assert "went on without" in d.notes[-1].message


def test_the_policy_decides_when_the_pipeline_does_not() -> None:
    policy = Policy.from_json({"plugins": {"on_error": "warn", "fuel": 1_000_000}})
    ok, diags = compile_with(f"verify,wasm{{path={fixture('loop')}}},verify", policy)
    assert ok and [d.code.name for d in diags if d.code] == ["wasm-fuel"]
    assert "budget 1,000,000" in diags[0].message
    ok, _ = compile_with(f"verify,wasm{{path={fixture('loop')},on-error=fail}},verify", policy)
    assert not ok


def test_a_bad_policy_section_is_refused() -> None:
    with pytest.raises(FrontendError, match="on_error"):
        Policy.from_json({"plugins": {"on_error": "ignore"}})


def test_a_well_behaved_plugin_gets_typed_options_and_its_remarks_reach_the_report() -> None:
    ov = Overlay(load_text(WORKFLOW, "w.aob"))
    pipe = PassPipeline.parse(f"verify,wasm{{path={fixture('noop')},level=3,mode=slow}}")
    inst = pipe.built[1].instance  # type: ignore[union-attr]
    assert inst.name == "noop" and inst.plugin_options() == {"level": 3, "mode": "slow"}
    result = pipe.run(ov)
    assert result.ok and not result.patches
    assert [(r.pass_name, r.kind, r.message) for r in result.remarks] == [
        ("noop", "analysis", "looked at the graph")
    ]


def test_plugin_options_are_checked_against_its_schema() -> None:
    with pytest.raises(PassError) as err:
        PassPipeline.parse(f"wasm{{path={fixture('noop')},levle=3,mode=medium}}")
    messages = [d.message for d in err.value.diagnostics]
    assert any('no option "levle"' in m for m in messages)
    with pytest.raises(PassError, match="minimum"):
        PassPipeline.parse(f"wasm{{path={fixture('noop')},level=-1}}")


def test_wasm_needs_a_path_and_a_readable_module(tmp_path: Path) -> None:
    with pytest.raises(PassError, match="needs the plugin"):
        PassPipeline.parse("wasm")
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"\0asm\x01\0\0\0garbage")
    for path, code in ((tmp_path / "absent.wasm", "wasm-load"), (junk, "wasm-load")):
        with pytest.raises(PassError) as err:
            PassPipeline.parse(f"wasm{{path={path}}}")
        assert err.value.diagnostics[0].code is not None
        assert err.value.diagnostics[0].code.name == code


def test_every_call_gets_a_fresh_store() -> None:
    # The memory hog grows memory to the cap, then traps: a second call would find no room
    # if anything survived the first.
    plugin = load_plugin(fixture("memory_hog"))
    for _ in range(2):
        with pytest.raises(PluginFailure) as err:
            plugin.call(b"{}", Limits(fuel=10**9, memory_mb=4))
        assert err.value.code.name == "wasm-memory"


def test_the_module_cache_compiles_once_then_reads_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AOBC_WASM_CACHE", str(tmp_path))
    forget_plugins()
    load_plugin(fixture("noop"))
    assert runtime_cache().last_source == "compiled"
    (entry,) = tmp_path.glob("*.cwasm")
    forget_plugins()
    load_plugin(fixture("noop"))
    assert runtime_cache().last_source == "disk"
    # A damaged entry is recompiled and replaced, never trusted.
    entry.write_bytes(entry.read_bytes()[:-100])
    forget_plugins()
    load_plugin(fixture("noop"))
    assert runtime_cache().last_source == "compiled"
    forget_plugins()
    load_plugin(fixture("noop"))
    assert runtime_cache().last_source == "disk"


def test_the_cache_key_covers_engine_settings() -> None:
    cache = runtime_cache()
    other = ModuleCache(cache.engine, cache.settings + ";other")
    assert cache.key("ab" * 32) != other.key("ab" * 32)
    assert cache.key("ab" * 32) != cache.key("cd" * 32)


def test_run_results_pack_error_pointer_and_length() -> None:
    assert unpack(pack(True, 1024, 31)) == (True, 1024, 31)
    assert unpack(pack(False, 0x7FFF_FFFF, 0xFFFF_FFFF)) == (False, 0x7FFF_FFFF, 0xFFFF_FFFF)
    assert unpack(pack(True, 8, 2) - (1 << 64)) == (True, 8, 2)  # as wasmtime returns it


def test_pass_plugin_flag_names_the_plugin_in_every_command_that_takes_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "w.aob"
    src.write_text(WORKFLOW)
    plugin = ["--pass-plugin", fixture("noop")]
    out = str(tmp_path / "w.aobir")
    assert main(["compile", str(src), *plugin, "--passes", "verify,noop{level=2}", "-o", out]) == 0
    assert main(["explain", str(src), *plugin, "--passes", "noop", "--output", "json"]) == 0
    assert "looked at the graph" in capsys.readouterr().out
    assert main(["verify-opt", str(src), *plugin, "--passes", "noop", "--seeds", "1"]) == 0
    capsys.readouterr()
    # Without the flag the name means nothing.
    assert main(["compile", str(src), "--passes", "noop", "--output", "json"]) == 1
    err = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert err[0]["code"] == "unknown-pass"


def test_failures_print_as_diagnostics_with_a_nonzero_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "w.aob"
    src.write_text(WORKFLOW)
    passes = f"verify,wasm{{path={fixture('trap')}}},verify"
    assert main(["compile", str(src), "--passes", passes, "-o", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "[wasm-trap]" in err and "Traceback" not in err
