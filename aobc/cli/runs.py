"""`aobc runs list|show|timeline`: look at runs in the embedded store."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from aobc.cli.common import Reporter
from aobc.cli.session import add_store_flag, open_stores


def register(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="runs_command", metavar="list|show|timeline", required=True)
    ls = sub.add_parser("list", help="recent runs, newest first")
    ls.add_argument("--status", choices=("running", "waiting", "succeeded", "failed", "cancelled"))
    ls.add_argument("--workflow")
    ls.add_argument("--limit", type=int, default=50)
    show = sub.add_parser("show", help="a run's state: nodes, tickets, patches, outputs")
    show.add_argument("run")
    tl = sub.add_parser("timeline", help="a run's events in order")
    tl.add_argument("run")
    tl.add_argument("--node", help="only events about this node")
    for q in (ls, show, tl):
        q.add_argument("--json", action="store_true", help="machine-readable output")
        add_store_flag(q)


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    stores = open_stores(args)
    try:
        return {"list": _list, "show": _show, "timeline": _timeline}[args.runs_command](
            stores, args
        )
    finally:
        stores.extra["embedded"].close()


def _list(stores: Any, args: argparse.Namespace) -> int:
    runs = stores.events.list_runs(status=args.status, workflow=args.workflow, limit=args.limit)
    if args.json:
        rows = [
            {
                "run": r.run_id,
                "workflow": r.workflow,
                "status": r.status,
                "created": r.created,
                "parent": r.parent,
            }
            for r in runs
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    for r in runs:
        parent = f"  (from {r.parent})" if r.parent else ""
        sys.stdout.write(f"{r.run_id}  {r.status:9}  {_when(r.created)}  {r.workflow}{parent}\n")
    return 0


def _show(stores: Any, args: argparse.Namespace) -> int:
    from aobc.runtime.commands import load_state

    st = load_state(stores, args.run)
    doc = {
        "run": st.run_id,
        "workflow": st.name,
        "status": st.status,
        "mode": st.mode,
        "version": st.version,
        "ir": st.ir,
        "inputs": st.inputs,
        "done": st.done,
        "running": sorted(st.started),
        "failed": st.failed,
        "tickets": [t.to_json() for t in st.tickets.values()],
        "patches": [
            {k: v for k, v in p.items() if k != "patch"} | {"id": p["patch"].get("id")}
            for p in st.patches
        ],
        "outputs": st.output_value,
        "error": st.error,
    }
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
        return 0
    sys.stdout.write(f"run {st.run_id}  {st.name}  {st.status}  ({st.mode} mode)\n")
    for node, digest in st.done.items():
        sys.stdout.write(f"  done     {node}  {str(digest)[:12]}\n")
    for node in sorted(st.started):
        sys.stdout.write(f"  running  {node}\n")
    for node, err in st.failed.items():
        sys.stdout.write(f"  failed   {node}: {err}\n")
    for t in st.tickets.values():
        state = t.decision or "open"
        sys.stdout.write(
            f"  ticket   {t.ticket}  {t.node}  {state}  level {t.level}  {', '.join(t.approvers)}\n"
        )
    for p in st.patches:
        pid = p["patch"].get("id", "")[7:19]
        sys.stdout.write(
            f"  patch    {pid}  {p.get('author_kind')} {p.get('author')}: {p.get('reason')}\n"
        )
    if st.status == "succeeded":
        sys.stdout.write(json.dumps(st.output_value, indent=2, default=str) + "\n")
    if st.error:
        sys.stdout.write(f"  error: {st.error}\n")
    return 0


def _timeline(stores: Any, args: argparse.Namespace) -> int:
    events = stores.events.read(args.run)
    if not events:
        from aobc.runtime.commands import load_state

        load_state(stores, args.run)  # raises the "no run" error
    if args.node:
        events = [e for e in events if e.data.get("node") == args.node]
    if args.json:
        for e in events:
            sys.stdout.write(json.dumps(e.to_json(), sort_keys=True, default=str) + "\n")
        return 0
    for e in events:
        detail = {k: v for k, v in e.data.items() if k not in ("patch", "inputs", "value")}
        sys.stdout.write(
            f"{e.seq:5}  {_when(e.time)}  {e.type:22}  {json.dumps(detail, default=str)[:140]}\n"
        )
    return 0
