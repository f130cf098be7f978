"""`aob approve TICKET approve|reject --reason TEXT` and `aob approvals list`."""

from __future__ import annotations

import argparse
import json

from aobc.aob import common


def register(p: argparse.ArgumentParser, name: str) -> None:
    if name == "approvals":
        sub = p.add_subparsers(dest="approvals_command", metavar="list", required=True)
        ls = sub.add_parser("list", help="open approval tickets")
        ls.set_defaults(handler=approvals_list)
        common(ls)
        return
    p.add_argument("ticket", help="the ticket id (t-...)")
    p.add_argument("decision", choices=("approve", "reject"))
    p.add_argument("--reason", required=True, help="why (recorded with your token's subject)")
    p.set_defaults(handler=approve)


def approve(args: argparse.Namespace) -> int:
    from aobc.aob.client import client
    from aobc.aob.term import out

    with client(args) as c:
        t = c.post(f"/approvals/{args.ticket}", {"decision": args.decision, "reason": args.reason})
    if args.json:
        out(json.dumps(t, sort_keys=True))
    else:
        out(f"{t['ticket']}: {t['status']} by {t['by']} (run {t['run']})")
    return 0


def approvals_list(args: argparse.Namespace) -> int:
    from aobc.aob.client import client
    from aobc.aob.term import out

    with client(args) as c:
        tickets = c.get("/approvals")["tickets"]
    if args.json:
        out(json.dumps(tickets, sort_keys=True))
        return 0
    for t in tickets:
        message = f"  {t['message']}" if t.get("message") else ""
        out(f"{t['ticket']}  {t['run']}  {t['node']}  ask {', '.join(t['approvers'])}{message}")
    return 0
