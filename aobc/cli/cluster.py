"""What the distributed-runtime commands share: store URLs, Kafka tuning, signals, errors."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
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

    return kafka_settings(
        config.kafka,
        spread=frozenset(JOB_TOPICS),  # a run's jobs go to every worker, not to one
        fetch_wait_max_ms=args.fetch_wait_ms,
        linger_ms=args.linger_ms,
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=args.heartbeat_ms,
    )


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """A store that cannot be reached or configured is a diagnostic, not a traceback."""
    from aobc.runtime.stores.base import StoreError

    try:
        yield
    except StoreError as err:
        message = str(err).removesuffix(f"  [{err.code}]")
        raise AobcError(Diagnostic.error(err.code, message, JsonLoc("<stores>", ""))) from None


def serve_until_signalled(
    main: Callable[[asyncio.Event], Coroutine[Any, Any, None]], verbose: bool = False
) -> None:
    """Run `main(stop)`; SIGTERM and SIGINT set `stop` (a clean shutdown, exit 0)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(go())
