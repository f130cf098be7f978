"""The compiler driver: source + overlays -> materialized workflow -> passes -> IR.

This is what `aobc compile` and `aobc validate` run, and what the runtime calls to recompile
after a live patch. Every stage reports diagnostics; none raises anything but `AobcError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aobc import collector
from aobc.diagnostics import Diagnostic
from aobc.errors import AobcError
from aobc.frontend import Loaded, load
from aobc.frontend.overlay import Overlay
from aobc.frontend.patchfile import Patch, load_patch
from aobc.ir import Workflow
from aobc.passes.pipeline import PassPipeline, PipelineOptions, PipelineResult
from aobc.policy import DEFAULT_POLICY, Policy
from aobc.source import SourceFile


@dataclass
class Compilation:
    """Everything one compile produced, for the CLI and for tests."""

    loaded: Loaded
    patches: list[Patch]
    overlay: Overlay
    result: PipelineResult | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)

    @property
    def workflow(self) -> Workflow:
        return self.overlay.head.workflow

    @property
    def sources(self) -> dict[str, SourceFile]:
        return {self.loaded.source.name: self.loaded.source}


def load_patches(paths: Sequence[str | Path], policy: Policy) -> list[Patch]:
    """Read every patch file, reporting the problems of all of them at once."""
    patches: list[Patch] = []
    errors: list[Diagnostic] = []
    for p in paths:
        try:
            patches.append(load_patch(p, policy))
        except AobcError as err:
            errors.extend(err.diagnostics)
    if errors:
        raise AobcError(errors)
    return patches


def resolve_rollbacks(patches: Sequence[Patch], names: Sequence[str]) -> set[str]:
    """Patch ids named by id, id prefix (at least 8 hex digits) or file name."""
    out: set[str] = set()
    for name in names:
        hits = [
            p.id
            for p in patches
            if p.id == name
            or (
                len(name) >= 8
                and p.id.removeprefix("sha256:").startswith(name.removeprefix("sha256:"))
            )
            or (p.loc is not None and (p.loc.file == name or Path(p.loc.file).name == name))
        ]
        if len(hits) != 1:
            from aobc import errorcodes as ec

            what = "no patch" if not hits else "several patches"
            raise AobcError(Diagnostic.error(ec.USAGE, f"--rollback {name}: {what} match"))
        out.add(hits[0])
    return out


def materialize_file(
    path: str | Path,
    patch_paths: Sequence[str | Path] = (),
    policy: Policy = DEFAULT_POLICY,
    rollback: Sequence[str] = (),
) -> Compilation:
    """Load a workflow and apply its overlays; raises AobcError on any refusal."""
    loaded = load(path, policy)
    patches = load_patches(patch_paths, policy)
    skip = resolve_rollbacks(patches, rollback)
    overlay = Overlay(loaded.workflow, policy)
    if skip:
        full = Overlay(loaded.workflow, policy)
        for p in patches:
            full.apply(p)
        overlay.remember(full.history)
    for p in patches:
        if p.id not in skip:
            overlay.apply(p)
    comp = Compilation(loaded, patches, overlay)
    comp.diagnostics.extend(loaded.warnings)
    return comp


def compile_file(
    path: str | Path,
    pipeline: str,
    patch_paths: Sequence[str | Path] = (),
    policy: Policy = DEFAULT_POLICY,
    options: PipelineOptions | None = None,
    rollback: Sequence[str] = (),
) -> Compilation:
    """Materialize, then run the pass pipeline. Pipeline problems end up in `diagnostics`."""
    pipe = PassPipeline.parse(pipeline)  # before anything runs: unknown passes fail fast
    with collector.paused():
        comp = materialize_file(path, patch_paths, policy, rollback)
        comp.result = pipe.run(comp.overlay, policy, options or PipelineOptions())
    comp.diagnostics.extend(comp.result.diagnostics)
    return comp


def compile_source(
    src: SourceFile,
    pipeline: str,
    policy: Policy = DEFAULT_POLICY,
    options: PipelineOptions | None = None,
) -> Compilation:
    """`compile_file` for a source held in memory (a workflow deployed over the HTTP API)."""
    from aobc.frontend import load_source

    pipe = PassPipeline.parse(pipeline)
    with collector.paused():
        loaded = load_source(src, policy)
        comp = Compilation(loaded, [], Overlay(loaded.workflow, policy))
        comp.diagnostics.extend(loaded.warnings)
        comp.result = pipe.run(comp.overlay, policy, options or PipelineOptions())
    comp.diagnostics.extend(comp.result.diagnostics)
    return comp
