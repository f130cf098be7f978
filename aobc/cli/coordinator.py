"""`aobc coordinator`: drive runs on the distributed stores; their nodes run on workers."""

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
    p.add_argument("--name", help="this coordinator's name; keep it across restarts (leases)")
    p.add_argument("--lease-ttl", type=float, default=10.0, metavar="S", help="run lease length")
    p.add_argument("--poll", type=float, default=1.0, metavar="S", help="look for runs this often")
    p.add_argument(
        "--priority", choices=("high", "medium", "low"), default="medium",
        help="job priority for runs whose labels do not give one",
    )  # fmt: skip
    p.add_argument(
        "--path", action="append", default=[], metavar="DIR", help="import functions from DIR"
    )
    p.add_argument(
        "--eager", type=int, default=0, metavar="N",
        help="run up to N ready function/http jobs here instead of on a worker (0: none)",
    )  # fmt: skip
    p.add_argument(
        "--drain-timeout", type=float, default=30.0, metavar="S",
        help="on SIGTERM, how long eager jobs may finish before workers take them",
    )  # fmt: skip
    p.add_argument("--secrets", metavar="FILE", help="secrets for `auth` of eager http jobs")
    add_agent_flags(p)


def add_agent_flags(p: argparse.ArgumentParser) -> None:
    from aobc.cli.agent_runner import add_agent_topic_flags

    g = p.add_argument_group("agent nodes")
    g.add_argument(
        "--agents", choices=("runners", "local"), default="runners",
        help="answered by agent runners on agent.jobs (default), or called from here",
    )  # fmt: skip
    g.add_argument(
        "--agent-deadline", type=float, default=600.0, metavar="S",
        help="reply deadline of an agent node with no timeout",
    )  # fmt: skip
    g.add_argument(
        "--agent-grace", type=float, default=2.0, metavar="S",
        help="how long after its deadline an answer may still arrive",
    )  # fmt: skip
    g.add_argument(
        "--review-agent", choices=("none", "effectful", "all"), default="none",
        help="agent patches that wait for an approver",
    )  # fmt: skip
    g.add_argument("--review-human", action="store_true", help="human patches wait too")
    add_agent_topic_flags(g)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from aobc import errorcodes as ec
    from aobc.cli.agent_runner import agent_topics
    from aobc.cli.cluster import store_errors
    from aobc.diagnostics import Diagnostic
    from aobc.errors import AobcError
    from aobc.runtime.agents_remote import AgentOptions
    from aobc.runtime.coordinator import Coordinator, CoordinatorOptions
    from aobc.runtime.engine import EngineOptions
    from aobc.runtime.remote import RemoteOptions
    from aobc.runtime.review import ReviewPolicy
    from aobc.source import JsonLoc

    config = store_config(args, "postgres", "kafka", "s3")
    if args.eager < 0:
        raise AobcError(
            Diagnostic.error(ec.INVALID_VALUE, "--eager must be >= 0", JsonLoc("<args>", ""))
        )
    secrets = None
    if args.secrets:
        from aobc.runtime.executors.http import Secrets

        secrets = Secrets(args.secrets)
    options = CoordinatorOptions(
        lease_ttl=args.lease_ttl,
        poll=args.poll,
        eager=args.eager,
        drain_timeout=args.drain_timeout,
        remote=RemoteOptions(priority=args.priority),
        engine=EngineOptions(
            policy=policy_from(args),
            search_path=args.path,
            secrets=secrets,
            poll_interval=0.5,
            review=ReviewPolicy(agent=args.review_agent, human=args.review_human),
        ),
        agents=None
        if args.agents == "local"
        else AgentOptions(reply_deadline=args.agent_deadline, grace=args.agent_grace),
    )
    if args.name:
        options.name = args.name
    with store_errors():
        coordinator = Coordinator(config, options, agent_topics(args, kafka_for(args, config)))
    try:
        sys.stderr.write(f"coordinator {options.name} ready\n")
        sys.stderr.flush()

        async def main(stop: asyncio.Event) -> None:
            await coordinator.serve(stop)

        serve_until_signalled(main, args.verbose, shutdown_timeout(args))
    finally:
        coordinator.close()
    return 0
