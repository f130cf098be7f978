"""`aobc replay RUN --from NODE --mode freeze|fresh`: rerun part of a run, report divergence."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from aobc.cli.common import Reporter
from aobc.cli.session import Progress, add_engine_flags, engine_for, open_stores


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the run to replay")
    p.add_argument(
        "--from", dest="node", required=True, metavar="NODE", help="re-execute from this node"
    )
    # `--mode` is the replay mode, as the vision spells it; a replay always logs in full.
    p.add_argument(
        "--mode",
        choices=("freeze", "fresh"),
        default="freeze",
        help="freeze: only NODE and what depends on it run again; fresh: everything does",
    )
    add_engine_flags(p, log_mode=False)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from aobc.runtime.replay import replay

    mode = args.mode
    args.mode = "full"  # the log mode the engine reads
    stores = open_stores(args)
    as_json = args.output == "json"
    engine = engine_for(args, stores, [], Progress(as_json, sys.stderr if not as_json else None))

    async def go() -> Any:
        try:
            return await replay(engine, args.run, args.node, mode)
        finally:
            await engine.close()

    try:
        result, report = asyncio.run(go())
    finally:
        stores.extra["embedded"].close()
    if as_json:
        sys.stdout.write(
            json.dumps({"result": result.to_json(), "divergence": [r.to_json() for r in report]})
            + "\n"
        )
    else:
        changed = [r for r in report if r.status != "same"]
        sys.stdout.write(
            f"replay {result.run_id} of {args.run} from {args.node} ({mode}): {result.status}\n"
        )
        for r in report:
            sys.stdout.write(f"  {r.status:8} {r.node}\n")
        sys.stdout.write(f"{len(changed)} of {len(report)} re-executed outputs diverged\n")
    return 0 if result.status == "succeeded" else 1
