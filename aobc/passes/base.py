"""Pass, PassContext and remarks: the shape every pass has.

A pass is a frozen dataclass whose fields are its options. It takes a workflow and returns a
new one, changing it only through `ctx.rewriter`, which records each change as an RFC 6902
operation against the canonical document. So for every pass
`apply(to_document(before), ctx.rewriter.ops) == to_document(after)`, and the recorded
operations are the optimizer overlay for that pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from aobc.diagnostics import DiagnosticEngine
from aobc.ir import Workflow
from aobc.passes.rewriter import Rewriter
from aobc.policy import DEFAULT_POLICY, Policy
from aobc.source import Loc

RemarkKind = Literal["passed", "missed", "analysis"]


@dataclass(frozen=True, slots=True)
class Remark:
    """What a pass did or did not do, and why (after LLVM's optimization remarks)."""

    pass_name: str
    kind: RemarkKind
    name: str
    nodes: tuple[str, ...]
    message: str
    loc: Loc | None = None
    args: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "pass": self.pass_name,
            "kind": self.kind,
            "name": self.name,
            "nodes": list(self.nodes),
            "loc": str(self.loc) if self.loc is not None else None,
            "message": self.message,
            "args": dict(self.args),
        }


@dataclass
class PassContext:
    """What a pass may touch besides the workflow: diagnostics, the rewriter, remarks."""

    diagnostics: DiagnosticEngine
    rewriter: Rewriter = field(default_factory=Rewriter)
    policy: Policy = DEFAULT_POLICY
    remarks: list[Remark] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    def remark(
        self,
        pass_name: str,
        kind: RemarkKind,
        name: str,
        nodes: tuple[str, ...],
        message: str,
        loc: Loc | None = None,
        **args: Any,
    ) -> None:
        self.remarks.append(Remark(pass_name, kind, name, nodes, message, loc, tuple(args.items())))

    def count(self, stat: str, n: int = 1) -> None:
        self.stats[stat] = self.stats.get(stat, 0) + n


@dataclass(frozen=True, kw_only=True)
class Pass:
    """A named Workflow -> Workflow transformation. Options are dataclass fields.

    Contract (after xDSL's ModulePass): the input verifies, the output verifies, and every
    change goes through `ctx.rewriter`.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    #: Required passes run even under -O0 and are never skipped by --opt-bisect-limit.
    required: ClassVar[bool] = False
    #: Analysis-only passes never change the workflow.
    transforms: ClassVar[bool] = True

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        raise NotImplementedError
