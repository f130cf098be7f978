"""`aobc approve TICKET approve|reject --reason TEXT`: decide a human approval."""

from __future__ import annotations

import argparse
import getpass
import sys

from aobc.cli.common import Reporter
from aobc.cli.session import add_store_flag, open_stores


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("ticket", help="the ticket id (t-...)")
    p.add_argument("decision", choices=("approve", "reject"))
    p.add_argument("--reason", required=True, help="why (recorded in the run's log)")
    p.add_argument("--by", default=None, help="who decides (default: the current user)")
    add_store_flag(p)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from aobc.runtime.commands import decide

    stores = open_stores(args)
    try:
        run_id = decide(
            stores, args.ticket, args.decision, args.by or getpass.getuser(), args.reason
        )
    finally:
        stores.extra["embedded"].close()
    verdict = "approved" if args.decision == "approve" else "rejected"
    sys.stdout.write(f"{args.ticket}: {verdict} (run {run_id})\n")
    return 0
