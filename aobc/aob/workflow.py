"""`aob workflow validate FILE | deploy FILE [--tag T] | list`."""

from __future__ import annotations

import argparse
import json

from aobc.aob import common


def register(p: argparse.ArgumentParser, name: str) -> None:
    sub = p.add_subparsers(dest="workflow_command", metavar="validate|deploy|list", required=True)
    v = sub.add_parser("validate", help="compile a workflow on the server; report every problem")
    v.add_argument("file")
    v.set_defaults(handler=validate)
    d = sub.add_parser("deploy", help="deploy a workflow and point tags at it")
    d.add_argument("file")
    d.add_argument("--tag", dest="tags", action="append", default=[], help="e.g. main, v3")
    d.add_argument("--namespace", default="default")
    d.set_defaults(handler=deploy)
    ls = sub.add_parser("list", help="deployed workflows and their tags")
    ls.set_defaults(handler=list_workflows)
    for q in (v, d, ls):
        common(q)


def validate(args: argparse.Namespace) -> int:
    from aobc.aob.client import ClientError, client, report
    from aobc.aob.run import workflow_body
    from aobc.aob.term import out, short, spinner

    with client(args) as c, spinner(f"validating {args.file}"):
        res = c.post("/workflows/validate", workflow_body(args.file))
    if args.json:
        out(json.dumps(res, sort_keys=True))
        return 0 if res["ok"] else 1
    if not res["ok"]:
        errors = [d for d in res["diagnostics"] if d["severity"] == "error"]
        first = errors[0] if errors else {"message": "invalid", "code": "invalid"}
        report(
            ClientError(
                f"{args.file}: {first['message']}",
                first.get("code") or "invalid",
                res["diagnostics"],
            )
        )
        return 1
    w = res["workflow"]
    warnings = [d for d in res["diagnostics"] if d["severity"] == "warning"]
    for d in warnings:
        out(f"  warning: {d['message']}  [{d.get('code')}]")
    out(f"{args.file}: ok ({w['name']}, {w['nodes']} nodes, version {short(w['hash'])})")
    return 0


def deploy(args: argparse.Namespace) -> int:
    from aobc.aob.client import client
    from aobc.aob.run import workflow_body
    from aobc.aob.term import out, spinner

    body = {**workflow_body(args.file), "tags": args.tags, "namespace": args.namespace}
    with client(args) as c, spinner(f"deploying {args.file}"):
        res = c.post("/workflows", body)
    if args.json:
        out(json.dumps(res, sort_keys=True))
        return 0
    tags = ", ".join(f"{t}" for t in sorted(res["tags"])) or "no tags"
    out(f"{res['name']}  {res['hash']}  ({tags})")
    return 0


def list_workflows(args: argparse.Namespace) -> int:
    from aobc.aob.client import client
    from aobc.aob.term import out, short

    with client(args) as c:
        rows = c.get("/workflows")["workflows"]
    if args.json:
        out(json.dumps(rows, sort_keys=True))
        return 0
    for w in rows:
        tags = " ".join(f"{t}={short(h)}" for t, h in sorted(w["tags"].items()))
        out(f"{w['namespace']}/{w['name']}  latest {short(w['latest'])}  {tags}")
    return 0
