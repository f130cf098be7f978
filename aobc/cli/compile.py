"""`aobc compile FILE [--patch P]... [-O0|-O1|-O2] [--passes PIPELINE] [--emit ...] [-o OUT]`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from aobc.cli.common import (
    Reporter,
    add_output_flag,
    add_patch_flags,
    add_policy_flag,
    policy_from,
    write_output,
)
from aobc.driver import Compilation, compile_file
from aobc.passes.pipeline import PipelineOptions, pipeline_for

EMITS = ("ir", "ir-text", "json", "dot", "mermaid")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a workflow (.aob or .json), or a reproducer file")
    add_patch_flags(p)
    opt = p.add_mutually_exclusive_group()
    opt.add_argument(
        "-O", dest="opt", choices=("0", "1", "2"), help="preset pipeline: -O0, -O1 (default), -O2"
    )
    opt.add_argument(
        "--passes", metavar="PIPELINE", help="e.g. 'verify,prune-dead{aggressive=true},verify'"
    )
    p.add_argument(
        "--emit", choices=EMITS, default="ir", help="what to write (default: ir, a .aobir file)"
    )
    p.add_argument("-o", dest="out", metavar="OUT", help="output file ('-' for stdout)")
    p.add_argument(
        "--verify-each", action="store_true", help="verify after every transforming pass"
    )
    p.add_argument(
        "--print-ir-after-all", action="store_true", help="print the workflow after every pass"
    )
    p.add_argument(
        "--print-ir-after-change", action="store_true", help="print it after passes that changed it"
    )
    p.add_argument("--time-passes", action="store_true", help="print how long each pass took")
    p.add_argument(
        "--opt-bisect-limit", type=int, metavar="N", help="run only the first N optional passes"
    )
    p.add_argument(
        "--reproducer-dir", metavar="DIR", help="where a failing pass writes its reproducer"
    )
    p.add_argument("--report", action="store_true", help="print what each pass did and why")
    add_policy_flag(p)
    add_output_flag(p)


def _reproducer(path: str) -> dict[str, Any] | None:
    if not path.endswith(".json"):
        return None
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("aobc_reproducer") == 1 else None


def _log(text: str) -> None:
    sys.stderr.write(text + "\n")


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    policy = policy_from(args)
    source = args.file
    pipeline_text = args.passes
    repro = _reproducer(source)
    if repro is not None:
        # A reproducer carries the input workflow and the pipeline that failed on it.
        fd, tmp = tempfile.mkstemp(suffix=".json", prefix="aobc-repro-input-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(repro.get("workflow"), f)
        source = tmp
        pipeline_text = pipeline_text or repro.get("pipeline")
    options = PipelineOptions(
        verify_each=args.verify_each,
        print_after_all=args.print_ir_after_all,
        print_after_change=args.print_ir_after_change,
        time_passes=args.time_passes,
        opt_bisect_limit=args.opt_bisect_limit,
        reproducer_dir=Path(
            args.reproducer_dir or os.environ.get("AOBC_REPRO_DIR") or tempfile.gettempdir()
        ),
        log=_log,
    )
    pipeline = pipeline_for(pipeline_text, f"O{args.opt}" if args.opt else None)
    comp = compile_file(source, pipeline, args.patches, policy, options, args.rollback)
    reporter.add_sources(comp.sources)
    if args.time_passes:
        _print_timings(comp)
    if args.report:
        _print_report(comp)
    reporter.diagnostics(comp.diagnostics)
    if not comp.ok:
        return 1
    _emit(comp, args)
    return 0


def _emit(comp: Compilation, args: argparse.Namespace) -> None:
    wf = comp.workflow
    if args.emit == "ir":
        from aobc.backend.aobir import encode, ir_hash
        from aobc.backend.lower import lower

        origins = {nid: o.patch_id for nid, o in comp.overlay.head.provenance.nodes.items()}
        ir = lower(wf, origins)
        out = args.out or f"{Path(args.file).stem}.aobir"
        write_output(out, encode(ir))
        if out != "-":
            sys.stderr.write(
                f"compiled {wf.name}: {len(wf.nodes)} nodes, {len(comp.patches)} overlays -> {out} ({ir_hash(ir)})\n"
            )
        return
    if args.emit == "ir-text":
        from aobc.backend.lower import lower
        from aobc.backend.text import ir_to_text

        origins = {nid: o.patch_id for nid, o in comp.overlay.head.provenance.nodes.items()}
        write_output(args.out, ir_to_text(lower(wf, origins)))
        return
    from aobc.backend.emit import get_emitter

    write_output(args.out, get_emitter(args.emit).emit(wf))


def _print_timings(comp: Compilation) -> None:
    runs = comp.result.runs if comp.result else []
    total = sum(r.seconds for r in runs) or 1e-9
    lines = [
        "===-------------------------------------------------------------===",
        "  pass timings",
        "",
    ]
    for r in runs:
        mark = "skipped" if r.skipped else ("changed" if r.changed else "")
        lines.append(
            f"  {r.seconds * 1000:9.3f} ms  {100 * r.seconds / total:5.1f}%  {r.spec}  {mark}"
        )
    lines.append(f"  {total * 1000:9.3f} ms  total")
    sys.stderr.write("\n".join(lines) + "\n")


def _print_report(comp: Compilation) -> None:
    out = sys.stdout
    wf = comp.workflow
    before = comp.overlay.base.workflow
    out.write(f"== {wf.name} ({comp.loaded.source.name})\n")
    out.write(
        f"   nodes {len(before.nodes)} -> {len(wf.nodes)}, edges {len(before.edges)} -> {len(wf.edges)}\n"
    )
    for p in comp.patches:
        out.write(f"   overlay {p.describe()}: {len(p.ops)} ops\n")
    if comp.result is None:
        return
    for r in comp.result.runs:
        status = (
            "skipped"
            if r.skipped
            else (f"changed ({len(r.patch.ops)} ops)" if r.patch else "no change")
        )
        out.write(f"   pass {r.spec}: {status}, {r.seconds * 1000:.2f} ms\n")
    for rm in comp.result.remarks:
        loc = f" at {rm.loc}" if rm.loc is not None else ""
        out.write(f"     [{rm.kind}] {rm.pass_name}: {rm.message}{loc}\n")
