"""`aob patch list RUN | show PATCH | propose RUN FILE | approve PATCH | reject PATCH`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from aobc.aob import common


def register(p: argparse.ArgumentParser, name: str) -> None:
    sub = p.add_subparsers(
        dest="patch_command", metavar="list|show|propose|approve|reject", required=True
    )
    ls = sub.add_parser("list", help="a run's patches (all runs' without RUN)")
    ls.add_argument("run", nargs="?")
    ls.add_argument("--status", help="only patches in this state (pending: awaiting approval)")
    ls.set_defaults(handler=patch_list)
    show = sub.add_parser("show", help="a patch: who, why, its operations, what happened")
    show.add_argument("patch", help="the patch id, or 8+ hex digits of it")
    show.set_defaults(handler=patch_show)
    pr = sub.add_parser("propose", help="propose a live patch to a running run")
    pr.add_argument("run")
    pr.add_argument("file", help="RFC 6902 operations, bare or in an envelope (JSON)")
    pr.set_defaults(handler=patch_propose)
    decided = []
    for verb in ("approve", "reject"):
        d = sub.add_parser(verb, help=f"{verb} a patch that waits for an approver")
        d.add_argument("patch")
        d.add_argument("--reason", default="", help="why (recorded with your token's subject)")
        d.set_defaults(handler=patch_decide, verb=verb)
        decided.append(d)
    for q in (ls, show, pr, *decided):
        common(q)


def _line(p: dict[str, Any]) -> str:
    from aobc.aob.term import short

    return (
        f"{short(p['id'])}  {p['status']:8}  {p.get('author_kind')} {p.get('author')}: "
        f"{p.get('reason') or ''}"
    )


def patch_list(args: argparse.Namespace) -> int:
    from aobc.aob.client import client
    from aobc.aob.term import out

    with client(args) as c:
        if args.run:
            patches = c.get(f"/runs/{args.run}/patches", status=args.status)["patches"]
        else:
            patches = c.get("/patches", status=args.status)["patches"]
    if args.json:
        out(json.dumps(patches, sort_keys=True))
        return 0
    for p in patches:
        out(_line(p))
    return 0


def patch_show(args: argparse.Namespace) -> int:
    from aobc.aob.client import client
    from aobc.aob.term import dump, out

    with client(args) as c:
        p = c.get(f"/patches/{args.patch}")
    if args.json:
        dump(p)
        return 0
    out(f"patch {p['id']}")
    out(f"  run      {p['run']}")
    out(f"  status   {p['status']}")
    out(f"  author   {p['author_kind']} {p['author']}")
    out(f"  reason   {p.get('reason') or ''}")
    for key, value in sorted(p.get("detail", {}).items()):
        out(f"  {key:8} {json.dumps(value, default=str)[:200]}")
    out(json.dumps(p["operations"], indent=2))
    return 0


def patch_propose(args: argparse.Namespace) -> int:
    from aobc.aob.client import client
    from aobc.aob.run import read_json_arg
    from aobc.aob.term import out

    raw = read_json_arg(args.file, "the patch")
    with client(args) as c:
        p = c.post(f"/runs/{args.run}/patches", raw)
    if args.json:
        out(json.dumps(p, sort_keys=True))
    elif p.get("review"):
        out(f"proposed {p['id']}; it waits for an approver: {p['review']}")
    else:
        out(f"proposed {p['id']} to {args.run}; the run applies it")
    return 0


def patch_decide(args: argparse.Namespace) -> int:
    from aobc.aob.client import client
    from aobc.aob.term import out

    with client(args) as c:
        p = c.post(f"/patches/{args.patch}/{args.verb}", {"reason": args.reason})
    out(json.dumps(p, sort_keys=True) if args.json else _line(p))
    return 0
