"""`aobc agent-runner`: answer agent nodes' LLM calls from `agent.jobs` (needs only Kafka).

The provider's location comes from `--openai-base-url`/`--anthropic-base-url` or
`AOBC_OPENAI_BASE_URL`/`AOBC_ANTHROPIC_BASE_URL`, its key from `OPENAI_API_KEY`/
`ANTHROPIC_API_KEY` (never a flag: flags show in process lists), and the tools agents may call
from `--tools FILE` (JSON: `{"name": "module:function"}`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from aobc.cli.cluster import (
    add_cluster_flags,
    add_shutdown_flag,
    kafka_for,
    serve_until_signalled,
    shutdown_timeout,
    store_config,
)
from aobc.cli.common import Reporter


def add_agent_topic_flags(p: argparse._ActionsContainer) -> None:
    """Rename the agent topics (before the Kafka URL's prefix), as for every other topic."""
    p.add_argument("--agent-jobs-topic", metavar="NAME", help="the topic for agent.jobs")
    p.add_argument("--agent-results-topic", metavar="NAME", help="the topic for agent.results")


def agent_topics(args: argparse.Namespace, settings: Any) -> Any:
    """`settings` (KafkaSettings) with the agent topics renamed as the flags say."""
    from aobc.runtime.agent_protocol import AGENT_JOBS, AGENT_RESULTS
    from aobc.runtime.stores.kafka import TopicSpec

    topics = dict(settings.topics)
    for logical, name in ((AGENT_JOBS, args.agent_jobs_topic), (AGENT_RESULTS, args.agent_results_topic)):  # fmt: skip
        if name:
            topics[logical] = TopicSpec(name, settings.partitions(logical))
    return replace(settings, topics=topics)


def register(p: argparse.ArgumentParser) -> None:
    add_cluster_flags(p, consumer=True)
    add_shutdown_flag(p)
    add_agent_topic_flags(p)
    p.add_argument("--group", default="agent-runners", help="the consumer group runners share")
    p.add_argument("--concurrency", type=int, default=4, metavar="N", help="jobs at once")
    p.add_argument("--name", help="this runner's name, in its answers")
    p.add_argument(
        "--drain-timeout", type=float, default=30.0, metavar="S",
        help="on SIGTERM, how long running jobs may finish before they are handed back",
    )  # fmt: skip
    p.add_argument("--tools", metavar="FILE", help='tools agents may call: {"name": "mod:fn"}')
    p.add_argument(
        "--path", action="append", default=[], metavar="DIR", help="import tools from DIR"
    )
    p.add_argument("--openai-base-url", metavar="URL", help="($AOBC_OPENAI_BASE_URL)")
    p.add_argument("--anthropic-base-url", metavar="URL", help="($AOBC_ANTHROPIC_BASE_URL)")
    p.add_argument("--script", metavar="FILE", help="answers for the scripted provider")


def _fail(message: str) -> Exception:
    from aobc import errorcodes as ec
    from aobc.diagnostics import Diagnostic
    from aobc.errors import AobcError
    from aobc.source import JsonLoc

    return AobcError(Diagnostic.error(ec.INVALID_VALUE, message, JsonLoc("<args>", "")))


def providers_from(args: argparse.Namespace) -> Any:
    from aobc.runtime.providers import ProviderConfig, ProviderError, ToolRegistry

    for directory in reversed(args.path):
        sys.path.insert(0, str(Path(directory).resolve()))
    tools = ToolRegistry()
    if args.tools:
        try:
            mapping = json.loads(Path(args.tools).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise _fail(f"--tools {args.tools}: {err}") from None
        if not isinstance(mapping, dict):
            raise _fail(f"--tools {args.tools}: expected a JSON object of tools")
        try:
            tools = ToolRegistry.load(mapping)
        except ProviderError as err:
            raise _fail(f"--tools {args.tools}: {err.message}") from None
    overrides: dict[str, Any] = {"tools": tools}
    if args.openai_base_url:
        overrides["openai_base_url"] = args.openai_base_url
    if args.anthropic_base_url:
        overrides["anthropic_base_url"] = args.anthropic_base_url
    if args.script:
        overrides["script_path"] = args.script
    return ProviderConfig.from_env(**overrides)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from aobc.cli.cluster import store_errors
    from aobc.runtime.agent_runner import AgentRunner, RunnerOptions
    from aobc.runtime.stores.kafka import KafkaBus

    if args.concurrency < 1:
        raise _fail("--concurrency must be >= 1")
    config = store_config(args, "kafka")
    providers = providers_from(args)
    options = RunnerOptions(
        group=args.group, concurrency=args.concurrency, drain_timeout=args.drain_timeout
    )
    if args.name:
        options.name = args.name
    with store_errors():
        bus = KafkaBus(agent_topics(args, kafka_for(args, config)))
    try:
        runner = AgentRunner(bus, providers, options)
        sys.stderr.write(f"agent runner {options.name} ready\n")
        sys.stderr.flush()

        async def main(stop: asyncio.Event) -> None:
            await runner.serve(stop)

        serve_until_signalled(main, args.verbose, shutdown_timeout(args))
    finally:
        bus.close()
    return 0
