"""`aobc show FILE.aobir`: the text form of a compiled workflow, after verifying the file."""

from __future__ import annotations

import argparse

from aobc.cli.common import Reporter, add_output_flag, write_output


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a compiled .aobir file")
    add_output_flag(p)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from aobc.backend.aobir import read
    from aobc.backend.text import ir_to_text

    write_output(None, ir_to_text(read(args.file)))
    return 0
