"""`aobc explain FILE [--patch P]... [-O0|-O1|-O2|--passes P] [--output text|json] [--html F]`.

Compiles like `aobc compile` and reports what the optimizer did: per pass, what fired where
and what was missed and why, with timings; the nodes and edges it changed; and the cost
before and after. As text (coloured on a terminal unless NO_COLOR is set), as JSON lines
(docs/explain.md), and optionally as a standalone HTML page with both graphs drawn.
"""

from __future__ import annotations

import argparse
import os
import sys

from aobc.cli.common import Reporter, add_patch_flags, add_policy_flag, policy_from, write_output


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a workflow (.aob or .json)")
    add_patch_flags(p)
    opt = p.add_mutually_exclusive_group()
    opt.add_argument(
        "-O", dest="opt", choices=("0", "1", "2"), help="preset pipeline: -O0, -O1 (default), -O2"
    )
    opt.add_argument("--passes", metavar="PIPELINE", help="e.g. 'verify,parallelize,verify'")
    p.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="the report (and diagnostics) as text or JSON lines",
    )
    p.add_argument("--html", metavar="FILE", help="also write a standalone HTML report")
    add_policy_flag(p)


def use_color(stream: object) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from aobc.driver import compile_file
    from aobc.explain import explain, to_json_lines, to_text
    from aobc.passes.pipeline import pipeline_for

    pipeline = pipeline_for(args.passes, f"O{args.opt}" if args.opt else None)
    comp = compile_file(args.file, pipeline, args.patches, policy_from(args), None, args.rollback)
    reporter.add_sources(comp.sources)
    ex = explain(comp, pipeline)
    if args.output == "json":
        sys.stdout.write(to_json_lines(ex))
    else:
        sys.stdout.write(to_text(ex, color=use_color(sys.stdout)))
    sys.stdout.flush()
    if args.html:
        from aobc.explain_html import to_html

        write_output(args.html, to_html(ex))
        sys.stderr.write(f"wrote {args.html}\n")
    reporter.diagnostics(comp.diagnostics)
    return 0 if comp.ok else 1
