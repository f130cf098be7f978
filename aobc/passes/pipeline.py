"""The pass manager: build a pipeline from its string, then run it over an overlay.

Every pass that changes the workflow produces an optimizer patch, which is applied to the
overlay through the same validator as agent and human patches (so it is verified, and gets
provenance). The pass's returned workflow must equal the patched one: that is the patch law,
checked on every run, so a pass that changes anything behind its rewriter's back fails.

Instrumentation: `verify_each`, `print_after_all`, `print_after_change`, `time_passes`,
`opt_bisect_limit` (LLVM's: optional passes past the limit are skipped, required ones never),
fixpoint groups, and a reproducer file (pipeline string plus input workflow) whenever a pass
fails.
"""

from __future__ import annotations

import time
import traceback
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aobc import __version__, collector
from aobc import errorcodes as ec
from aobc.backend.serialize import to_document
from aobc.canonical import canonical_bytes, pretty, sha256_hex
from aobc.diagnostics import Diagnostic, DiagnosticEngine
from aobc.errors import PassError, PatchError
from aobc.frontend.overlay import Overlay
from aobc.frontend.patchfile import Patch
from aobc.ir import Workflow
from aobc.passes.base import Pass, PassContext, Remark
from aobc.passes.registry import Target, available_passes, load_pass_class, pass_options
from aobc.passes.rewriter import Rewriter
from aobc.passes.spec import FixpointSpec, Item, PassSpec, format_pipeline, parse_pipeline
from aobc.policy import DEFAULT_POLICY, Policy
from aobc.suggest import did_you_mean

PRESETS: Final[dict[str, str]] = {
    "O0": "verify",
    "O1": "verify,prune-dead,cse,prune-dead,verify",
    "O2": "verify,fixpoint(prune-dead,cse,pushdown-predicates,coalesce-http,licm),parallelize,"
    "cache-mark,verify",
}
DEFAULT_MAX_ITERATIONS: Final = 10


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    verify_each: bool = False
    print_after_all: bool = False
    print_after_change: bool = False
    time_passes: bool = False
    opt_bisect_limit: int | None = None
    reproducer_dir: Path | None = None
    #: Where IR dumps and bisect lines go (the CLI passes stderr).
    log: Callable[[str], None] | None = None


@dataclass(frozen=True, slots=True)
class PassRun:
    """One execution of one pass."""

    name: str
    spec: str
    seconds: float
    changed: bool
    skipped: bool = False
    patch: Patch | None = None


@dataclass
class PipelineResult:
    overlay: Overlay
    runs: list[PassRun] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    remarks: list[Remark] = field(default_factory=list)

    @property
    def workflow(self) -> Workflow:
        return self.overlay.head.workflow

    @property
    def patches(self) -> list[Patch]:
        return [r.patch for r in self.runs if r.patch is not None]

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)


@dataclass(frozen=True, slots=True)
class _Built:
    spec: PassSpec
    instance: Pass


@dataclass(frozen=True, slots=True)
class _BuiltGroup:
    spec: FixpointSpec
    items: tuple[_Built | _BuiltGroup, ...]
    max_iterations: int


def _convert(opt: Any, raw: str) -> Any:
    """Convert an option value from its pipeline spelling; ValueError says why not."""
    t = opt.type
    if t is bool:
        if raw.lower() in ("true", "1", "yes", "on"):
            return True
        if raw.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if t is int:
        return int(raw)
    if t is float:
        return float(raw)
    if typing.get_origin(t) is typing.Literal:
        choices = [str(a) for a in typing.get_args(t)]
        if raw not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return raw
    return raw


class PassPipeline:
    """A parsed, validated pipeline, ready to run."""

    def __init__(self, items: tuple[Item, ...], built: tuple[_Built | _BuiltGroup, ...]) -> None:
        self.items = items
        self.built = built

    def __str__(self) -> str:
        return format_pipeline(self.items)

    @staticmethod
    def parse(text: str, extra_passes: dict[str, Target] | None = None) -> PassPipeline:
        """Parse and resolve every pass and option; raises PassError with every problem."""
        items = parse_pipeline(text)
        table = available_passes(extra_passes)
        diags: list[Diagnostic] = []
        built = tuple(_build(i, table, diags) for i in items)
        if diags:
            raise PassError(diags)
        return PassPipeline(items, built)  # type: ignore[arg-type]

    def run(
        self,
        overlay: Overlay,
        policy: Policy = DEFAULT_POLICY,
        options: PipelineOptions = PipelineOptions(),
    ) -> PipelineResult:
        result = PipelineResult(overlay)
        runner = _Runner(self, policy, options, result, overlay.head.workflow)
        with collector.paused():
            try:
                runner.items(self.built)
            except _Stop:
                pass
        return result


def _max_iterations(item: FixpointSpec, diags: list[Diagnostic]) -> int:
    max_it = DEFAULT_MAX_ITERATIONS
    for key, raw in item.options:
        if key != "max-iterations":
            diags.append(
                Diagnostic.error(
                    ec.PASS_OPTION, f'fixpoint has no option "{key}"; it takes max-iterations'
                )
            )
        elif not raw.isdigit() or int(raw) < 1:
            diags.append(
                Diagnostic.error(
                    ec.PASS_OPTION, f"max-iterations must be a positive integer, not {raw!r}"
                )
            )
        else:
            max_it = int(raw)
    return max_it


def _build(
    item: Item, table: dict[str, Target], diags: list[Diagnostic]
) -> _Built | _BuiltGroup | None:
    if isinstance(item, FixpointSpec):
        children = tuple(_build(i, table, diags) for i in item.items)
        max_it = _max_iterations(item, diags)
        return _BuiltGroup(item, tuple(c for c in children if c is not None), max_it)
    target = table.get(item.name)
    if target is None:
        diags.append(
            Diagnostic.error(
                ec.UNKNOWN_PASS,
                f'unknown pass "{item.name}"',
                None,
                *did_you_mean(item.name, table),
            )
        )
        return None
    try:
        cls = load_pass_class(target)
    except (ImportError, AttributeError, TypeError) as err:
        diags.append(
            Diagnostic.error(
                ec.UNKNOWN_PASS, f'pass "{item.name}" cannot be loaded from {target}: {err}'
            )
        )
        return None
    # A pass standing for many (`wasm{path=...}`) picks the class its options name first.
    specialize = getattr(cls, "specialize", None)
    if specialize is not None:
        try:
            cls = specialize(dict(item.options))
        except PassError as err:
            diags.extend(err.diagnostics)
            return None
    opts = {o.name: o for o in pass_options(cls)}
    kwargs: dict[str, Any] = {}
    ok = True
    for key, raw in item.options:
        opt = opts.get(key)
        if opt is None:
            known = ", ".join(opts) or "no options"
            diags.append(
                Diagnostic.error(
                    ec.PASS_OPTION,
                    f'pass "{item.name}" has no option "{key}" (it has {known})',
                    None,
                    *did_you_mean(key, opts),
                )
            )
            ok = False
            continue
        try:
            kwargs[opt.field] = _convert(opt, raw)
        except ValueError as err:
            diags.append(
                Diagnostic.error(
                    ec.PASS_OPTION, f'option "{key}" of pass "{item.name}": {err}, not {raw!r}'
                )
            )
            ok = False
    if not ok:
        return None
    try:
        instance = cls(**kwargs)
    except (TypeError, ValueError) as err:
        diags.append(Diagnostic.error(ec.PASS_OPTION, f'pass "{item.name}": {err}'))
        return None
    return _Built(item, instance)


class _Stop(Exception):
    """Raised inside the runner to end the pipeline after an error."""


@dataclass
class _Runner:
    pipeline: PassPipeline
    policy: Policy
    options: PipelineOptions
    result: PipelineResult
    input: Workflow
    bisect_count: int = 0

    def log(self, text: str) -> None:
        if self.options.log is not None:
            self.options.log(text)

    def items(self, items: tuple[_Built | _BuiltGroup, ...]) -> bool:
        changed = False
        for it in items:
            if isinstance(it, _BuiltGroup):
                changed |= self.group(it)
            else:
                changed |= self.one(it)
        return changed

    def group(self, g: _BuiltGroup) -> bool:
        changed = False
        for _ in range(g.max_iterations):
            if not self.items(g.items):
                return changed
            changed = True
        self.result.diagnostics.append(
            Diagnostic.warning(
                ec.PASS_FAILED, f"{g.spec} did not converge in {g.max_iterations} iterations"
            )
        )
        return changed

    def one(self, b: _Built) -> bool:
        p = b.instance
        if not p.required:
            self.bisect_count += 1
            limit = self.options.opt_bisect_limit
            if limit is not None:
                running = self.bisect_count <= limit
                self.log(
                    f"BISECT: {'running' if running else 'NOT running'} pass ({self.bisect_count}) {b.spec}"
                )
                if not running:
                    self.result.runs.append(PassRun(p.name, str(b.spec), 0.0, False, skipped=True))
                    return False
        overlay = self.result.overlay
        before = overlay.head.workflow
        ctx = PassContext(DiagnosticEngine(), Rewriter(), self.policy, self.result.remarks)
        start = time.perf_counter()
        try:
            after = p.run(before, ctx)
        except Exception as err:  # a pass bug must become a diagnostic, never a traceback
            self.fail(
                b, f"pass {b.spec} raised {type(err).__name__}: {err}", traceback.format_exc()
            )
        seconds = time.perf_counter() - start
        # A pass that runs twice (verify first and last) says the same things twice: once is
        # enough for whoever reads them.
        seen = self.result.diagnostics
        self.result.diagnostics.extend(d for d in ctx.diagnostics if d not in seen)
        patch = self.apply(b, ctx, before, after) if p.transforms else None
        changed = patch is not None
        self.result.runs.append(PassRun(p.name, str(b.spec), seconds, changed, patch=patch))
        if ctx.diagnostics.has_errors:
            raise _Stop
        if self.options.print_after_all or (self.options.print_after_change and changed):
            from aobc.frontend.printer import to_dsl

            self.log(
                f"// ----- IR after {b.spec}{'' if changed else ' (no change)'} ----- //\n"
                + to_dsl(overlay.head.workflow)
            )
        if changed and self.options.verify_each:
            from aobc.passes.verify import verify

            errors = [d for d in verify(overlay.head.workflow, self.policy) if d.is_error]
            if errors:
                self.result.diagnostics.extend(errors)
                self.fail(b, f"pass {b.spec} left a workflow that does not verify", None)
        return changed

    def apply(self, b: _Built, ctx: PassContext, before: Workflow, after: Workflow) -> Patch | None:
        overlay = self.result.overlay
        ops = ctx.rewriter.ops
        if not ops:
            if after is not before and after != before:
                self.fail(
                    b, f"pass {b.spec} changed the workflow without recording the change", None
                )
            return None
        reasons = [
            r.message for r in ctx.remarks if r.pass_name == b.instance.name and r.kind == "passed"
        ]
        patch = Patch(
            ops=tuple(ops),
            author_kind="optimizer",
            author=str(b.spec),
            reason="; ".join(reasons[:5])
            + (f" (+{len(reasons) - 5} more)" if len(reasons) > 5 else ""),
            base=overlay.head.hash,
        )
        try:
            overlay.apply(patch)
        except PatchError as err:
            self.result.diagnostics.extend(err.diagnostics)
            self.fail(b, f"pass {b.spec} produced a patch that was refused", None)
        if overlay.head.workflow != after:
            self.fail(
                b,
                f"pass {b.spec} broke the patch law: its patch does not give the workflow it returned",
                None,
            )
        return patch

    def fail(self, b: _Built, message: str, trace: str | None) -> typing.NoReturn:
        path = self.reproducer(b, message, trace)
        notes = (
            [Diagnostic.note(f"reproducer written to {path}; rerun it with: aobc compile {path}")]
            if path
            else []
        )
        self.result.diagnostics.append(Diagnostic.error(ec.PASS_FAILED, message, None, *notes))
        raise _Stop

    def reproducer(self, b: _Built, message: str, trace: str | None) -> Path | None:
        directory = self.options.reproducer_dir
        if directory is None:
            return None
        doc = {
            "aobc_reproducer": 1,
            "aobc_version": __version__,
            "pipeline": str(self.pipeline),
            "failed_pass": str(b.spec),
            "error": message,
            "traceback": trace,
            "workflow": to_document(self.input),
        }
        name = f"aobc-repro-{sha256_hex(canonical_bytes(doc))[:12]}.json"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / name
            path.write_text(pretty(doc), encoding="utf-8")
        except OSError:
            return None
        return path


def pipeline_for(text: str | None, opt_level: str | None) -> str:
    """The pipeline string for `--passes` or an `-O` level (default -O1)."""
    if text is not None:
        return text
    return PRESETS[opt_level or "O1"]
