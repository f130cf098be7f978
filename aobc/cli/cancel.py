"""`aobc cancel RUN [--reason TEXT]`."""

from __future__ import annotations

import argparse
import getpass
import sys

from aobc.cli.common import Reporter
from aobc.cli.session import add_store_flag, open_stores


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the run id")
    p.add_argument("--reason", default="", help="why (recorded in the run's log)")
    p.add_argument("--by", default=None, help="who cancels (default: the current user)")
    add_store_flag(p)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from aobc.runtime.commands import cancel

    stores = open_stores(args)
    try:
        status = cancel(stores, args.run, args.by or getpass.getuser(), args.reason)
    finally:
        stores.extra["embedded"].close()
    sys.stdout.write(f"{args.run}: {status}\n")
    return 0
