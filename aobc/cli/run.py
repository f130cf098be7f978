"""`aobc run FILE|IR [--inputs JSON] [--store DIR] [--output json]`: run a workflow here."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from aobc.cli.common import Reporter, add_patch_flags
from aobc.cli.session import (
    Progress,
    add_engine_flags,
    engine_for,
    open_stores,
    print_result,
    read_inputs,
)


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a workflow (.aob, .json) or a compiled .aobir")
    p.add_argument(
        "--inputs", metavar="JSON", help="the run's inputs: a JSON object or a file holding one"
    )
    p.add_argument("--idempotency-key", metavar="KEY", help="start at most one run for this key")
    add_patch_flags(p)
    p.add_argument(
        "-O",
        dest="opt",
        choices=("0", "1", "2"),
        help="optimization level when compiling (default 1)",
    )
    add_engine_flags(p)


def compile_ir(args: argparse.Namespace, reporter: Reporter) -> Any:
    """The IR to run: read from a .aobir, or compiled from source with its overlays."""
    from aobc.backend.aobir import read
    from aobc.backend.lower import lower
    from aobc.cli.common import policy_from
    from aobc.driver import compile_file
    from aobc.errors import AobcError
    from aobc.passes.pipeline import pipeline_for

    if args.file.endswith(".aobir"):
        return read(args.file)
    comp = compile_file(
        args.file,
        pipeline_for(None, f"O{args.opt}" if args.opt else None),
        args.patches,
        policy_from(args),
        rollback=args.rollback,
    )
    reporter.add_sources(comp.sources)
    if not comp.ok:
        raise AobcError(comp.diagnostics)
    warnings = [d for d in comp.diagnostics if not d.is_error]
    if warnings:
        reporter.diagnostics(warnings)
    origins = {nid: o.patch_id for nid, o in comp.overlay.head.provenance.nodes.items()}
    return lower(comp.workflow, origins)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    ir = compile_ir(args, reporter)
    inputs = read_inputs(args.inputs)
    stores = open_stores(args)
    progress = Progress(args.output == "json")
    engine = engine_for(args, stores, [str(Path(args.file).resolve().parent)], progress)

    async def go() -> Any:
        try:
            return await engine.start(ir, inputs, idempotency_key=args.idempotency_key)
        finally:
            await engine.close()

    try:
        result = asyncio.run(go())
    finally:
        stores.extra["embedded"].close()
    return print_result(result, args.output == "json")
