"""`prune-dead`'s missed remarks, and the `else` rule found by the differential property."""

from __future__ import annotations

import dataclasses

from aobc.diagnostics import DiagnosticEngine
from aobc.frontend import load_text
from aobc.ir import Workflow
from aobc.passes.base import PassContext, Remark
from aobc.passes.prune_dead import PruneDeadPass
from aobc.tv import check


def run(src: str) -> tuple[Workflow, Workflow, list[Remark]]:
    wf = load_text(src, "p.aob")
    ctx = PassContext(DiagnosticEngine())
    return wf, PruneDeadPass().run(wf, ctx), [r for r in ctx.remarks if r.kind == "missed"]


BRANCHES = """
workflow w {
  input n: int
  output r = big.value
  c = condition inputs.n > 9
  note = function "m:note" { effect: pure, args: { n: inputs.n } }
  big = function "m:big" { effect: effectful }
  c -[false]-> note
  c -[else]-> big
}
"""


def test_the_only_branch_beside_else_stays_with_a_remark() -> None:
    before, after, missed = run(BRANCHES)
    assert after == before
    (m,) = missed
    assert (m.name, m.nodes) == ("kept-branch", ("note",))
    assert m.message == (
        'kept "note": it is the only "false" branch of "c", whose "else" branch would '
        'otherwise be taken when "c" is false'
    )


def test_removing_the_branch_would_change_the_run() -> None:
    # The rule is needed: the workflow without "note" runs "big" when n <= 9.
    before, _, _ = run(BRANCHES)
    without = dataclasses.replace(
        before,
        nodes=tuple(n for n in before.nodes if n.id != "note"),
        edges=tuple(e for e in before.edges if e.dst != "note"),
    )
    assert check(before, without, seeds=4) is not None


def test_a_second_branch_under_the_label_lets_one_go() -> None:
    two = BRANCHES.replace(
        "c -[else]-> big",
        'big2 = function "m:b2" { effect: effectful }\n  c -[else]-> big\n  c -[false]-> big2',
    )
    _, after, missed = run(two)
    assert "note" not in {n.id for n in after.nodes}
    assert all(m.name != "kept-branch" for m in missed)


def test_an_unread_effect_is_kept_with_a_remark() -> None:
    _, after, missed = run('workflow w {\n  s = function "m:s" { effect: effectful }\n}')
    assert [n.id for n in after.nodes] == ["s"]
    (m,) = missed
    assert m.name == "kept-effect"
    assert m.message.startswith('kept "s": nothing reads its output, but it is effectful')
