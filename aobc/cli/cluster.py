"""What the distributed-runtime commands share: store URLs, Kafka tuning, signals, errors."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from aobc.diagnostics import Diagnostic
from aobc.errors import AobcError
from aobc.source import JsonLoc


def add_cluster_flags(p: argparse.ArgumentParser, *, consumer: bool = False) -> None:
    """The four store URLs (flags or AOBC_*_URL), and Kafka tuning for long-lived processes."""
    from aobc.runtime.stores.config import StoreConfig

    StoreConfig.add_arguments(p)
    if consumer:
        g = p.add_argument_group("kafka tuning")
        g.add_argument(
            "--fetch-wait-ms", type=int, default=2,
            help="how long the broker holds an empty fetch (Tansu holds every fetch this long,"
            " so it sets the delivery latency there; Kafka answers when data comes, and a"
            " larger value only saves idle fetches)",
        )  # fmt: skip
        g.add_argument(
            "--linger-ms", type=float, default=0.0,
            help="producer batching wait (0: send at once; batches form behind requests in"
            " flight under load)",
        )  # fmt: skip
        g.add_argument(
            "--session-timeout-ms", type=int, default=6000, help="consumer group session"
        )
        g.add_argument("--heartbeat-ms", type=int, default=1000, help="consumer heartbeat")
        g.add_argument(
            "--topic", action="append", default=[], metavar="LOGICAL=NAME[:PARTITIONS]",
            help="rename a topic and/or set its partitions, e.g. node.results=results:24"
            " (repeatable; also $AOBC_KAFKA_TOPICS, comma-separated; flags win)",
        )  # fmt: skip
        g.add_argument("-v", "--verbose", action="store_true", help="log what happens")


def store_config(args: argparse.Namespace, *required: str) -> Any:
    from aobc.runtime.stores.config import StoreConfig

    config = StoreConfig.from_args(args)
    with store_errors():
        config.require(*required)
    return config


def kafka_for(args: argparse.Namespace, config: Any) -> Any:
    from aobc.runtime.stores.distributed import kafka_settings
    from aobc.runtime.stores.kafka import JOB_TOPICS

    env = os.environ.get("AOBC_KAFKA_TOPICS", "")
    specs = [*(part for part in env.split(",") if part.strip()), *args.topic]
    with store_errors():
        topics = topic_specs(specs)
    return kafka_settings(
        config.kafka,
        topics=topics,
        spread=frozenset(JOB_TOPICS),  # a run's jobs go to every worker, not to one
        fetch_wait_max_ms=args.fetch_wait_ms,
        linger_ms=args.linger_ms,
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=args.heartbeat_ms,
    )


def topic_specs(specs: list[str]) -> Any:
    """The runtime's topics with `LOGICAL=NAME[:PARTITIONS]` overrides applied (later ones
    win). Every process of a deployment must be given the same ones."""
    from aobc.runtime.stores.config import StoreConfigError
    from aobc.runtime.stores.kafka import DEFAULT_TOPICS, TopicSpec

    topics = dict(DEFAULT_TOPICS)
    for spec in specs:
        logical, eq, rest = spec.strip().partition("=")
        name, colon, count = rest.partition(":")
        if not eq or logical not in topics:
            known = ", ".join(sorted(topics))
            raise StoreConfigError(
                f"--topic {spec!r}: LOGICAL=NAME[:PARTITIONS], LOGICAL one of {known}"
            )
        partitions = topics[logical].partitions
        if colon:
            if not count.isdigit() or int(count) < 1:
                raise StoreConfigError(f"--topic {spec!r}: PARTITIONS must be a number >= 1")
            partitions = int(count)
        topics[logical] = TopicSpec(name.strip() or topics[logical].name, partitions)
    return topics


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """A store that cannot be reached or configured is a diagnostic, not a traceback."""
    from aobc.runtime.stores.base import StoreError

    try:
        yield
    except StoreError as err:
        message = str(err).removesuffix(f"  [{err.code}]")
        raise AobcError(Diagnostic.error(err.code, message, JsonLoc("<stores>", ""))) from None


def add_shutdown_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shutdown-timeout", type=float, metavar="S",
        help="after SIGTERM, exit (status 3) if a clean shutdown takes longer than this"
        " (default: the drain timeout + 30 s)",
    )  # fmt: skip


def shutdown_timeout(args: argparse.Namespace) -> float:
    given: float | None = args.shutdown_timeout
    return given if given is not None else float(getattr(args, "drain_timeout", 30.0)) + 30.0


#: The exit status of a shutdown cut short by its deadline (or by a second signal).
SHUTDOWN_CUT: int = 3


def serve_until_signalled(
    main: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
    verbose: bool = False,
    shutdown_timeout: float | None = None,
) -> None:
    """Run `main(stop)`; SIGTERM and SIGINT set `stop` (a clean shutdown, exit 0).

    A clean shutdown finishes or hands back the work in flight, which needs the servers: with
    a broker or database gone, leaving a consumer group or flushing a producer can block for
    as long as the client library retries. So the first signal also arms a deadline
    (`shutdown_timeout`) and a second signal cuts the shutdown short: the process then exits
    at once with `SHUTDOWN_CUT`, as a crash would, and what it had not acknowledged is
    delivered again to another process (every effect keeps its idempotency key).
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    def cut(why: str) -> None:
        sys.stderr.write(f"shutdown cut short: {why}; unacknowledged work goes to others\n")
        sys.stderr.flush()
        os._exit(SHUTDOWN_CUT)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():
                cut("a second signal")
            stop.set()
            if shutdown_timeout is not None:
                timer = threading.Timer(
                    shutdown_timeout, cut, (f"not done after {shutdown_timeout:g} s",)
                )
                timer.daemon = True  # a shutdown that finishes in time exits without it
                timer.start()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await main(stop)

    asyncio.run(go())
