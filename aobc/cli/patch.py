"""`aobc patch apply DOC PATCH` and `aobc patch diff A B`: RFC 6902 on any JSON documents."""

from __future__ import annotations

import argparse
import json
from typing import Any

from aobc.canonical import content_hash
from aobc.cli.common import Reporter, add_output_flag, add_policy_flag, policy_from, write_output
from aobc.errors import AobcError
from aobc.frontend import read_source
from aobc.frontend.json_loader import parse_json
from aobc.frontend.jsonpatch import apply_ops, diff
from aobc.frontend.patchfile import AUTHOR_KINDS, Patch, patch_from_json
from aobc.policy import Policy


def register(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="patch_command", metavar="apply|diff|propose", required=True)
    pr = sub.add_parser("propose", help="propose a live patch to a running run")
    pr.add_argument("run")
    pr.add_argument("patch")
    pr.add_argument("--by", default=None, help="who proposes (default: the current user)")
    pr.add_argument(
        "--store", metavar="DIR", help="the embedded store (default: $AOBC_STORE or ./.aobc)"
    )
    add_policy_flag(pr)
    add_output_flag(pr)
    a = sub.add_parser("apply", help="apply PATCH to DOC and print the result")
    a.add_argument("doc")
    a.add_argument("patch")
    a.add_argument("-o", dest="out", metavar="OUT")
    add_policy_flag(a)
    add_output_flag(a)
    d = sub.add_parser("diff", help="print a patch that turns A into B")
    d.add_argument("a")
    d.add_argument("b")
    d.add_argument("--envelope", action="store_true", help="wrap the operations with provenance")
    d.add_argument("--author", default="unknown")
    d.add_argument("--author-kind", choices=AUTHOR_KINDS, default="human")
    d.add_argument("--reason", default="")
    d.add_argument("-o", dest="out", metavar="OUT")
    add_policy_flag(d)
    add_output_flag(d)


def _read_json(path: str, policy: Policy) -> Any:
    src = read_source(path)
    diags: list[Any] = []
    ok, value = parse_json(src, policy.limits, diags)
    if not ok:
        raise AobcError(diags)
    return value


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    policy = policy_from(args)
    if args.patch_command == "propose":
        return _propose(args, policy)
    if args.patch_command == "apply":
        doc = _read_json(args.doc, policy)
        patch = patch_from_json(_read_json(args.patch, policy), args.patch, policy)
        result = apply_ops(doc, patch.ops, patch.loc)
        write_output(args.out, _dump(result))
        return 0
    a = _read_json(args.a, policy)
    b = _read_json(args.b, policy)
    ops = diff(a, b)
    if not args.envelope:
        write_output(args.out, _dump([op.to_json() for op in ops]))
        return 0
    patch = Patch(
        ops=tuple(ops),
        author_kind=args.author_kind,
        author=args.author,
        reason=args.reason,
        base=content_hash(a),
    )
    write_output(args.out, _dump(patch.to_json()))
    return 0


def _propose(args: argparse.Namespace, policy: Policy) -> int:
    import getpass
    import sys

    from aobc.cli.session import open_stores
    from aobc.runtime.commands import propose

    raw = _read_json(args.patch, policy)
    stores = open_stores(args)
    try:
        pid = propose(stores, args.run, raw, args.by or getpass.getuser(), args.patch)
    finally:
        stores.extra["embedded"].close()
    sys.stdout.write(f"proposed {pid} to {args.run}; the run validates and applies it\n")
    return 0
