"""`aobc validate FILE [--patch P]... [--output json]`: report every problem, change nothing."""

from __future__ import annotations

import argparse
import sys

from aobc.cli.common import Reporter, add_output_flag, add_patch_flags, add_policy_flag, policy_from
from aobc.driver import compile_file
from aobc.errors import AobcError


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a workflow (.aob or .json)")
    add_patch_flags(p)
    add_policy_flag(p)
    add_output_flag(p)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    # The diagnostics are what validate produces, so they go to stdout.
    try:
        comp = compile_file(
            args.file, "verify", args.patches, policy_from(args), rollback=args.rollback
        )
    except AobcError as err:
        reporter.diagnostics(err.diagnostics, sys.stdout, summary=True)
        return 1
    reporter.add_sources(comp.sources)
    reporter.diagnostics(comp.diagnostics, sys.stdout, summary=True)
    if comp.ok and not reporter.json:
        wf = comp.workflow
        sys.stdout.write(f"{args.file}: ok ({len(wf.nodes)} nodes, {len(wf.edges)} edges)\n")
    return 0 if comp.ok else 1
