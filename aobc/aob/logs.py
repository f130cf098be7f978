"""`aob logs stream RUN [--node NODE]`: a run's events, from the start, as they happen."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from aobc.aob import common


def register(p: argparse.ArgumentParser, name: str) -> None:
    sub = p.add_subparsers(dest="logs_command", metavar="stream", required=True)
    stream = sub.add_parser("stream", help="print a run's events until it ends")
    stream.add_argument("run")
    stream.add_argument("--node", help="only events about this node")
    stream.add_argument("--after", type=int, default=0, metavar="SEQ", help="start after SEQ")
    stream.set_defaults(handler=logs_stream)
    common(stream)


def follow(c: Any, run_id: str, node: str | None, as_json: bool, after: int = 0) -> int:
    """Print events until the run ends; 0 when it succeeded, 1 otherwise."""
    from aobc.aob.term import EventPrinter, paint

    printer = EventPrinter(as_json)
    status = "unknown"
    for ev in c.events(run_id, after=after, node=node):
        if ev.event == "end":
            status = ev.data.get("status", "unknown") if isinstance(ev.data, dict) else status
            if as_json:
                sys.stdout.write(json.dumps({"end": ev.data}) + "\n")
            elif node is not None:
                print(paint(f"run {run_id} {status}", "1"))
        elif ev.event == "dropped":
            if not as_json:
                print(paint("  (fell behind; reconnecting without a gap)", "90"), file=sys.stderr)
        elif isinstance(ev.data, dict):
            printer(ev.data)
    return 0 if status == "succeeded" else 1


def logs_stream(args: argparse.Namespace) -> int:
    from aobc.aob.client import client

    with client(args) as c:
        follow(c, args.run, args.node, args.json, args.after)
    return 0
