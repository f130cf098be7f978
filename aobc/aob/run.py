"""`aob run start|list|show|cancel`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from aobc.aob import common


def register(p: argparse.ArgumentParser, name: str) -> None:
    sub = p.add_subparsers(dest="run_command", metavar="start|list|show|cancel", required=True)
    start = sub.add_parser("start", help="start a run of a workflow file, a tag or a hash")
    start.add_argument(
        "workflow",
        help="a workflow file (.aob, .json, .aobir; deployed first), NAME[:TAG] or sha256:HASH",
    )
    start.add_argument("--inputs", metavar="FILE|JSON", help="the run's inputs")
    start.add_argument("--tag", help="the tag to start (default: main)")
    start.add_argument("--priority", choices=("high", "medium", "low"), default="medium")
    start.add_argument("--idempotency-key", metavar="KEY", help="start at most one run per key")
    start.add_argument("--namespace", default="default")
    start.add_argument("--follow", action="store_true", help="stream its events until it ends")
    start.set_defaults(handler=run_start)
    ls = sub.add_parser("list", help="runs, newest first")
    ls.add_argument(
        "--status", choices=("queued", "running", "waiting", "succeeded", "failed", "cancelled")
    )
    ls.add_argument("--workflow")
    ls.add_argument("--namespace")
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(handler=run_list)
    show = sub.add_parser("show", help="a run's state")
    show.add_argument("run")
    show.set_defaults(handler=run_show)
    cancel = sub.add_parser("cancel", help="cancel a run")
    cancel.add_argument("run")
    cancel.add_argument("--reason", default="")
    cancel.set_defaults(handler=run_cancel)
    for q in (start, ls, show, cancel):
        common(q)


def read_json_arg(text: str | None, what: str) -> Any:
    from aobc.aob.client import ClientError

    if not text:
        return {}
    source = text
    if not text.lstrip().startswith(("{", "[")):
        try:
            source = Path(text).read_text(encoding="utf-8")
        except OSError as err:
            raise ClientError(f"cannot read {what} {text!r}: {err.strerror}", "io-error") from None
    try:
        return json.loads(source)
    except json.JSONDecodeError as err:
        raise ClientError(f"{what} is not JSON: {err.msg.lower()}", "json-syntax") from None


def workflow_body(path: str) -> dict[str, Any]:
    """The deploy/validate body for a workflow file."""
    import base64

    from aobc.aob.client import ClientError

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as err:
        raise ClientError(f"cannot read {path!r}: {err.strerror}", "io-error") from None
    if p.suffix == ".aobir":
        return {"ir": base64.b64encode(data).decode("ascii"), "filename": p.name}
    try:
        return {"source": data.decode("utf-8-sig"), "filename": p.name}
    except UnicodeDecodeError:
        raise ClientError(f"{path} is not UTF-8", "encoding") from None


def _target(args: argparse.Namespace, client: Any) -> dict[str, Any]:
    from aobc.aob.term import spinner

    ref = args.workflow
    if os.path.exists(ref):
        with spinner(f"deploying {ref}"):
            body = {**workflow_body(ref), "namespace": args.namespace}
            deployed = client.request("POST", "/workflows", body)
        return {"hash": deployed["hash"]}
    bare = ref.removeprefix("sha256:")
    if len(bare) == 64 and all(ch in "0123456789abcdef" for ch in bare):
        return {"hash": bare}
    name, _, tag = ref.partition(":")
    return {"workflow": name, "tag": args.tag or tag or "main"}


def run_start(args: argparse.Namespace) -> int:
    from aobc.aob.client import client
    from aobc.aob.term import out, paint

    inputs = read_json_arg(args.inputs, "--inputs")
    with client(args) as c:
        body = {
            **_target(args, c),
            "inputs": inputs,
            "priority": args.priority,
            "namespace": args.namespace,
        }
        if args.idempotency_key:
            body["idempotency_key"] = args.idempotency_key
        run = c.request("POST", "/runs", body)
        if args.json and not args.follow:
            out(json.dumps(run, sort_keys=True))
        elif not args.json:
            out(f"{paint(run['id'], '1')}  {run['workflow']}  {run['status']}")
        if not args.follow:
            return 0
        from aobc.aob.logs import follow

        return follow(c, run["id"], None, args.json)


def run_list(args: argparse.Namespace) -> int:
    from aobc.aob.client import client
    from aobc.aob.term import out, when

    with client(args) as c:
        runs = c.get(
            "/runs",
            status=args.status,
            workflow=args.workflow,
            namespace=args.namespace,
            limit=args.limit,
        )["runs"]
    if args.json:
        out(json.dumps(runs, sort_keys=True))
        return 0
    for r in runs:
        parent = f"  (from {r['parent']})" if r.get("parent") else ""
        out(f"{r['id']}  {r['status']:9}  {when(r['created'])}  {r['workflow']}{parent}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from aobc.aob.client import client
    from aobc.aob.term import dump, out, short

    with client(args) as c:
        run = c.get(f"/runs/{args.run}")
    if args.json:
        dump(run)
        return 0
    out(f"run {run['id']}  {run['workflow']}  {run['status']}  ({run['mode']} mode)")
    for node, digest in run["nodes"]["done"].items():
        out(f"  done     {node}  {short(digest)}")
    for node in run["nodes"]["running"]:
        out(f"  running  {node}")
    for node, err in run["nodes"]["failed"].items():
        out(f"  failed   {node}: {err}")
    for t in run["tickets"]:
        out(f"  ticket   {t['ticket']}  {t['node']}  {t['status']}  {', '.join(t['approvers'])}")
    for p in run["patches"]:
        out(f"  patch    {short(p['id'])}  applied  {p['author_kind']} {p['author']}")
    for h in run["held"]:
        out(f"  patch    {short(h['id'])}  waits    {h['reason']}")
    if run.get("replay"):
        rp = run["replay"]
        out(f"  replay of {rp['of']} from {rp['from']} ({rp['mode']})")
        for d in rp["divergence"]:
            out(f"    {d['status']:8} {d['node']}")
    if run["status"] == "succeeded":
        out(json.dumps(run["outputs"], indent=2, default=str))
    if run.get("error"):
        out(f"  error: {run['error']}")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    from aobc.aob.client import client
    from aobc.aob.term import out

    with client(args) as c:
        res = c.post(f"/runs/{args.run}/cancel", {"reason": args.reason})
    out(json.dumps(res, sort_keys=True) if args.json else f"{args.run}: {res['status']}")
    return 0
