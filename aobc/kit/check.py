"""`aobc pass build` and `aobc pass test`: build a pass project, run its golden cases, then
translation validation on generated workflows.

Translation validation (aobc.tv) runs each generated workflow before and after the pass, in
deterministic worlds, on the real engine, and checks that the result refines the original:
same outcome and outputs, the same effectful calls in an order the original allows. A pass
that breaks that, or that leaves a workflow the verifier refuses, gets a counterexample,
reduced to the smallest workflow that still shows it.
"""

from __future__ import annotations

import contextlib
import importlib
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.errors import AobcError
from aobc.kit.golden import CHECKED, actual, parse_cases, write_cases
from aobc.kit.project import PassProject

if TYPE_CHECKING:
    from aobc.ir import Workflow
    from aobc.passes.base import Pass

Log = Callable[[str], None]


def stale(project: PassProject) -> bool:
    """True when the module is missing or older than a source next to the main one."""
    out = project.output
    if out is None or not out.is_file():
        return True
    built = out.stat().st_mtime
    return any(
        p.stat().st_mtime > built
        for p in project.source.parent.iterdir()
        if p.suffix in (".zig", ".c", ".h")
    )


def build(project: PassProject, log: Log) -> None:
    """Compile a Zig or C pass (and load it, to check its ABI); import-check a Python one."""
    if project.wasm:
        from aobc.kit.toolchain import ToolchainError, compile_wasm

        assert project.output is not None
        try:
            compile_wasm(project.source, project.output)
        except ToolchainError as err:
            raise AobcError(Diagnostic.error(ec.USAGE, str(err))) from None
        cls = pass_class(project)
        size = project.output.stat().st_size
        log(f"built {project.output.name} ({size:,} bytes): pass {cls.name}, {cls.summary}")
        return
    cls = pass_class(project)
    log(f"{project.module} imports and is pass {cls.name}; install it with: pip install -e .")


def pass_class(project: PassProject) -> type[Pass]:
    """The project's pass class (a Python class, or one made from the module's manifest)."""
    from aobc.passes.registry import load_pass_class

    if project.wasm:
        from aobc.passes.wasm import plugin_pass_class

        assert project.output is not None
        cls: type[Pass] = plugin_pass_class(project.output)
    else:
        root = str(project.source)
        if root not in sys.path:
            sys.path.insert(0, root)
        assert project.module is not None
        module, _, attr = project.module.partition(":")
        try:
            importlib.invalidate_caches()
            cls = load_pass_class(f"{module}:{attr}")
        except (ImportError, AttributeError, TypeError) as err:
            raise AobcError(
                Diagnostic.error(ec.USAGE, f"cannot load {project.module} from {root}: {err}")
            ) from None
    if cls.name != project.name:
        raise AobcError(
            Diagnostic.error(
                ec.USAGE,
                f'the pass calls itself "{cls.name}", but aobc-pass.toml says "{project.name}"',
            )
        )
    return cls


@contextlib.contextmanager
def registered(project: PassProject) -> Iterator[type[Pass]]:
    """The project's pass, usable by name in pipelines inside the block."""
    from aobc.passes.registry import available_passes, loaded_passes

    cls = pass_class(project)
    if available_passes().get(cls.name) is cls:  # installed already (pip install -e .)
        yield cls
        return
    with loaded_passes({cls.name: cls}):
        yield cls


@dataclass
class Report:
    passed: int = 0
    failed: int = 0
    lines: list[str] = field(default_factory=list)


def run_goldens(project: PassProject, update: bool, log: Log) -> Report:
    report = Report()
    files = sorted(project.cases.glob("*.test")) if project.cases else []
    if not files:
        log(f"no golden cases in {project.cases}")
    for path in files:
        cases = parse_cases(path)
        for case in cases:
            got = actual(case, case.pipeline(project.name))
            if "error" in got:
                report.failed += 1
                log(f"FAIL {path.name}::{case.name}: the pipeline failed\n{got['error']}")
                continue
            if update:
                case.sections.update(got)
                report.passed += 1
                continue
            bad = [k for k in CHECKED if case.sections.get(k) != got[k]]
            if bad:
                report.failed += 1
                log(f"FAIL {path.name}::{case.name}: [{'], ['.join(bad)}] differ")
                for key in bad:
                    log(f"  expected [{key}]:\n{_indent(case.sections.get(key, '(missing)'))}")
                    log(f"  got [{key}]:\n{_indent(got[key])}")
            else:
                report.passed += 1
                log(f"ok   {path.name}::{case.name}")
        if update:
            write_cases(path, cases)
            log(f"updated {path}")
    return report


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.rstrip("\n").splitlines()) or "    (empty)\n"


def _failure(wf: Workflow, pipeline: str) -> str | None:
    """Why the pipeline is wrong on `wf` (counterexample or refusal), or None."""
    from aobc.tv import check, optimize

    try:
        after = optimize(wf, pipeline)
    except ValueError as err:
        return str(err)
    found = check(wf, after, seeds=3)
    if found is None:
        return None
    return f"{found.reason}; inputs {found.inputs}, world seed {found.seed}"


def run_tv(project: PassProject, seeds: int, nodes: int, log: Log) -> Report:
    from aobc.frontend.printer import to_dsl
    from aobc.testing.generate import random_workflow
    from aobc.tv.reduce import reduce

    report = Report()
    pipeline = f"verify,{project.name},verify"
    for seed in range(seeds):
        wf = random_workflow(random.Random(seed), nodes)
        why = _failure(wf, pipeline)
        if why is None:
            report.passed += 1
            continue
        report.failed += 1
        small = reduce(wf, lambda c: _failure(c, pipeline) is not None)
        log(f"FAIL translation validation, generated workflow {seed} ({nodes} nodes): {why}")
        log(f"  reduced to {len(small.nodes)} nodes, still failing: {_failure(small, pipeline)}")
        log(_indent(to_dsl(small)))
    log(f"translation validation: {report.passed} of {seeds} generated workflows refine")
    return report
