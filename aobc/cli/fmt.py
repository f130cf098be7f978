"""`aobc fmt FILE [--json] [--check] [-w]`: print a workflow in canonical form."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aobc.cli.common import Reporter, add_output_flag, add_policy_flag, policy_from, write_output
from aobc.frontend import load


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a workflow (.aob or .json)")
    p.add_argument("--json", action="store_true", help="print the canonical JSON instead of DSL")
    p.add_argument(
        "--check", action="store_true", help="exit 1 if the file is not already canonical"
    )
    p.add_argument("-w", "--write", action="store_true", help="rewrite the file in place")
    add_policy_flag(p)
    add_output_flag(p)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    loaded = load(args.file, policy_from(args))
    if args.json:
        from aobc.backend.emit import get_emitter

        text = get_emitter("json").emit(loaded.workflow)
    else:
        from aobc.frontend.printer import to_dsl

        text = to_dsl(loaded.workflow)
    if args.check:
        same = loaded.source.text == text
        if not same:
            sys.stderr.write(f"{args.file}: not canonical; run aobc fmt -w {args.file}\n")
        return 0 if same else 1
    if args.write:
        if Path(args.file).read_text(encoding="utf-8") != text:
            write_output(args.file, text)
        return 0
    write_output(None, text)
    return 0
