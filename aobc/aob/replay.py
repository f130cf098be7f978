"""`aob replay RUN --from NODE --mode freeze|fresh`: re-run part of a finished run."""

from __future__ import annotations

import argparse
import json


def register(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("run")
    p.add_argument("--from", dest="node", required=True, metavar="NODE")
    p.add_argument("--mode", choices=("freeze", "fresh"), default="freeze")
    p.add_argument("--priority", choices=("high", "medium", "low"), default="medium")
    p.add_argument("--no-wait", action="store_true", help="print the new run's id and return")
    p.set_defaults(handler=replay)


def replay(args: argparse.Namespace) -> int:
    from aobc.aob.client import client
    from aobc.aob.term import out, spinner

    with client(args) as c:
        body = {"from": args.node, "mode": args.mode, "priority": args.priority}
        run = c.post(f"/runs/{args.run}/replay", body)
        if not args.no_wait:
            with spinner(f"replaying {args.run} from {args.node}"):
                for ev in c.events(run["id"], after=run["last_seq"]):
                    if ev.event == "end":
                        break
            run = c.get(f"/runs/{run['id']}")
    if args.json:
        out(json.dumps(run, sort_keys=True))
        return 0 if run["status"] in ("succeeded", "running", "queued") else 1
    divergence = run["replay"]["divergence"]
    changed = [d for d in divergence if d["status"] != "same"]
    out(f"replay {run['id']} of {args.run} from {args.node} ({args.mode}): {run['status']}")
    for d in divergence:
        out(f"  {d['status']:8} {d['node']}")
    if not args.no_wait:
        out(f"{len(changed)} of {len(divergence)} re-executed outputs diverged")
    return 0 if run["status"] in ("succeeded", "running", "queued") else 1
