"""`aobc worker [--priorities high,medium,low] [--concurrency N]`: run node jobs."""

from __future__ import annotations

import argparse
import asyncio
import sys

from aobc.cli.cluster import (
    add_cluster_flags,
    add_shutdown_flag,
    kafka_for,
    serve_until_signalled,
    shutdown_timeout,
    store_config,
)
from aobc.cli.common import Reporter, add_policy_flag, policy_from


def register(p: argparse.ArgumentParser) -> None:
    add_cluster_flags(p, consumer=True)
    add_shutdown_flag(p)
    add_policy_flag(p)
    p.add_argument(
        "--priorities", default="high,medium,low", help="job queues to take, most urgent first"
    )
    p.add_argument("--concurrency", type=int, default=4, metavar="N", help="jobs at once")
    p.add_argument("--group", default="workers", help="the consumer group workers share")
    p.add_argument(
        "--drain-timeout", type=float, default=30.0, metavar="S",
        help="on SIGTERM, how long running jobs may finish before they are handed back",
    )  # fmt: skip
    p.add_argument(
        "--path", action="append", default=[], metavar="DIR", help="import functions from DIR"
    )
    p.add_argument("--secrets", metavar="FILE", help="secrets for `auth` (JSON or TOML)")


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from aobc import errorcodes as ec
    from aobc.cli.cluster import store_errors
    from aobc.diagnostics import Diagnostic
    from aobc.errors import AobcError
    from aobc.runtime.engine import EngineOptions
    from aobc.runtime.remote import PRIORITIES
    from aobc.runtime.worker import Worker, WorkerOptions
    from aobc.source import JsonLoc

    priorities = [p.strip() for p in args.priorities.split(",") if p.strip()]
    bad = [p for p in priorities if p not in PRIORITIES]
    if bad or not priorities or args.concurrency < 1:
        why = f"unknown priorities {bad}" if bad or not priorities else "--concurrency must be >= 1"
        raise AobcError(Diagnostic.error(ec.INVALID_VALUE, why, JsonLoc("<args>", "")))
    config = store_config(args, "postgres", "kafka", "s3", "redis")
    secrets = None
    if args.secrets:
        from aobc.runtime.executors.http import Secrets

        secrets = Secrets(args.secrets)
    options = WorkerOptions(
        priorities=priorities,
        concurrency=args.concurrency,
        group=args.group,
        drain_timeout=args.drain_timeout,
        engine=EngineOptions(policy=policy_from(args), search_path=args.path, secrets=secrets),
    )
    with store_errors():
        worker = Worker(config, options, kafka_for(args, config))
    try:
        sys.stderr.write(f"worker {options.name} ready\n")
        sys.stderr.flush()

        async def main(stop: asyncio.Event) -> None:
            await worker.serve(stop)

        serve_until_signalled(main, args.verbose, shutdown_timeout(args))
    finally:
        worker.close()
    return 0
