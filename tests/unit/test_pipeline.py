"""The pass manager: pipeline strings, options, instrumentation, failures and reproducers."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from aobc.errors import PassError
from aobc.frontend import load_text
from aobc.frontend.overlay import Overlay
from aobc.ir import Workflow
from aobc.passes.base import Pass, PassContext
from aobc.passes.pipeline import PRESETS, PassPipeline, PipelineOptions
from aobc.passes.registry import available_passes, load_pass_class, pass_options
from aobc.passes.spec import format_pipeline, parse_pipeline

SRC = """
workflow p {
  output r = b.value
  a = function "m:a" { effect: pure }
  b = function "m:b" { effect: pure }
  dead = function "m:dead" { effect: pure }
  a -> b
}
"""


def overlay() -> Overlay:
    return Overlay(load_text(SRC, "p.aob"))


@dataclass(frozen=True, kw_only=True)
class Noop(Pass):
    name: ClassVar[str] = "noop"
    level: int = 1
    mode: Literal["fast", "slow"] = "fast"
    flag: bool = False

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        return wf


@dataclass(frozen=True, kw_only=True)
class Sneaky(Pass):
    """Changes the workflow without telling the rewriter: the patch law catches it."""

    name: ClassVar[str] = "sneaky"

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        return dataclasses.replace(wf, nodes=wf.nodes[:-1])


@dataclass(frozen=True, kw_only=True)
class Crash(Pass):
    name: ClassVar[str] = "crash"

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        raise RuntimeError("boom")


@dataclass(frozen=True, kw_only=True)
class Breaker(Pass):
    """Records a legal-looking patch that leaves a dangling edge."""

    name: ClassVar[str] = "breaker"

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        from aobc.ir import Edge

        return ctx.rewriter.add_edge(wf, Edge(src="a", dst="nowhere"))


EXTRA = {"noop": Noop, "sneaky": Sneaky, "crash": Crash, "breaker": Breaker}


@pytest.mark.parametrize(
    "text",
    [
        "verify,prune-dead{aggressive=true},verify",
        "verify",
        "fixpoint{max-iterations=3}(prune-dead,verify),verify",
        "noop{level=3,mode=slow,flag=true}",
    ],
)
def test_pipeline_prints_back_identically(text: str) -> None:
    assert format_pipeline(parse_pipeline(text)) == text
    assert str(PassPipeline.parse(text, EXTRA)) == text


def test_presets_parse() -> None:
    for text in PRESETS.values():
        PassPipeline.parse(text)


def test_unknown_pass_fails_before_anything_runs_with_a_suggestion() -> None:
    with pytest.raises(PassError) as err:
        PassPipeline.parse("verify,prune-ded,crash", EXTRA)
    diag = err.value.diagnostics[0]
    assert diag.code is not None and diag.code.name == "unknown-pass"
    assert diag.notes and '"prune-dead"' in diag.notes[0].message


def test_every_bad_option_is_reported() -> None:
    with pytest.raises(PassError) as err:
        PassPipeline.parse("noop{levl=2},noop{level=x},noop{mode=medium},noop{flag=maybe}", EXTRA)
    assert [d.code.name for d in err.value.diagnostics if d.code] == ["pass-option"] * 4
    assert '"level"' in err.value.diagnostics[0].notes[0].message


def test_typed_options_reach_the_pass() -> None:
    pipe = PassPipeline.parse("noop{level=3,mode=slow,flag=true}", EXTRA)
    inst = pipe.built[0].instance  # type: ignore[union-attr]
    assert (inst.level, inst.mode, inst.flag) == (3, "slow", True)
    assert [o.name for o in pass_options(Noop)] == ["level", "mode", "flag"]


def test_registry_table_names_match_classes() -> None:
    for name, target in available_passes().items():
        assert load_pass_class(target).name == name


def test_duplicate_plugin_names_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    import aobc.passes.registry as reg

    eps = [
        EntryPoint("prune-dead", "x:Y", "aobc.passes"),
        EntryPoint("mine", "a:B", "aobc.passes"),
        EntryPoint("mine", "c:D", "aobc.passes"),
    ]
    monkeypatch.setattr(reg, "entry_points", lambda group: eps)
    with pytest.raises(PassError) as err:
        reg.available_passes()
    assert sorted(d.message.split('"')[1] for d in err.value.diagnostics) == ["mine", "prune-dead"]


def test_prune_dead_emits_an_optimizer_patch_through_the_overlay() -> None:
    ov = overlay()
    result = PassPipeline.parse("verify,prune-dead,verify").run(ov)
    assert result.ok
    assert [n.id for n in result.workflow.nodes] == ["a", "b"]
    (patch,) = result.patches
    assert patch.author_kind == "optimizer" and patch.author == "prune-dead"
    assert patch.base == ov.base.hash
    # The removal is attributed too: provenance says which patch last touched "dead".
    assert ov.head.provenance.node("dead").patch_id == patch.id
    assert ov.head.provenance.node("a").patch_id is None
    assert any(r.kind == "passed" and r.nodes == ("dead",) for r in result.remarks)


def test_changing_the_workflow_behind_the_rewriter_fails_the_pass(tmp_path: Path) -> None:
    result = PassPipeline.parse("sneaky", EXTRA).run(
        overlay(), options=PipelineOptions(reproducer_dir=tmp_path)
    )
    assert not result.ok
    diag = next(d for d in result.diagnostics if d.is_error)
    assert diag.code is not None and diag.code.name == "pass-failed"
    assert "without recording" in diag.message


def test_a_crashing_pass_writes_a_reproducer(tmp_path: Path) -> None:
    pipe = PassPipeline.parse("verify,crash,verify", EXTRA)
    result = pipe.run(overlay(), options=PipelineOptions(reproducer_dir=tmp_path))
    assert not result.ok
    (repro,) = tmp_path.glob("aobc-repro-*.json")
    doc = json.loads(repro.read_text())
    assert doc["pipeline"] == "verify,crash,verify"
    assert doc["failed_pass"] == "crash"
    assert [n["id"] for n in doc["workflow"]["nodes"]] == ["a", "b", "dead"]
    assert "RuntimeError: boom" in doc["error"]
    assert str(repro) in result.diagnostics[-1].notes[0].message


def test_a_pass_whose_patch_breaks_verification_is_refused(tmp_path: Path) -> None:
    result = PassPipeline.parse("breaker", EXTRA).run(
        overlay(), options=PipelineOptions(reproducer_dir=tmp_path)
    )
    assert not result.ok
    assert {d.code.name for d in result.diagnostics if d.code} >= {"undefined-node", "pass-failed"}
    assert list(tmp_path.glob("aobc-repro-*.json"))


def test_opt_bisect_skips_optional_passes_only() -> None:
    lines: list[str] = []
    opts = PipelineOptions(opt_bisect_limit=0, log=lines.append)
    result = PassPipeline.parse("verify,prune-dead,verify").run(overlay(), options=opts)
    assert [r.skipped for r in result.runs] == [False, True, False]
    assert lines == ["BISECT: NOT running pass (1) prune-dead"]
    assert [n.id for n in result.workflow.nodes] == ["a", "b", "dead"]


def test_print_after_change_and_all() -> None:
    lines: list[str] = []
    PassPipeline.parse("verify,prune-dead").run(
        overlay(), options=PipelineOptions(print_after_change=True, log=lines.append)
    )
    assert (
        len(lines) == 1
        and "IR after prune-dead" in lines[0]
        and "dead" not in lines[0].split("\n", 1)[1]
    )
    lines.clear()
    PassPipeline.parse("verify,prune-dead").run(
        overlay(), options=PipelineOptions(print_after_all=True, log=lines.append)
    )
    assert len(lines) == 2


def test_fixpoint_stops_when_nothing_changes() -> None:
    result = PassPipeline.parse("fixpoint(prune-dead)").run(overlay())
    assert [r.changed for r in result.runs] == [True, False]


def test_verify_errors_stop_the_pipeline() -> None:
    bad = Overlay(load_text(SRC.replace("a -> b", "a -> b\n  b -> a"), "c.aob"))
    result = PassPipeline.parse("verify,prune-dead").run(bad)
    assert not result.ok
    assert [r.name for r in result.runs] == ["verify"]


def test_a_warning_said_by_both_verifies_is_reported_once() -> None:
    src = """
workflow w {
  output o = j
  a = function "m:a" { effect: pure }
  j = join all
  a -> j
}
"""
    result = PassPipeline.parse(PRESETS["O1"]).run(Overlay(load_text(src, "j.aob")))
    assert [str(d.code) for d in result.diagnostics].count("join-arity") == 1
    assert [b.name for b in result.runs].count("verify") == 2  # it did run twice


def test_the_collector_is_paused_only_while_passes_run() -> None:
    import gc

    seen: list[bool] = []

    @dataclass(frozen=True, kw_only=True)
    class Probe(Pass):
        name: ClassVar[str] = "probe"

        def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
            seen.append(gc.isenabled())
            return wf

    pipeline = PassPipeline.parse("probe", extra_passes={"probe": Probe})
    assert gc.isenabled()
    pipeline.run(overlay())
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        pipeline.run(overlay())  # a caller that turned it off keeps it off
        assert not gc.isenabled()
    finally:
        gc.enable()
