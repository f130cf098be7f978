"""`aobc resume RUN`: drive a run from where its log says it stopped."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from aobc.cli.common import Reporter
from aobc.cli.session import Progress, add_engine_flags, engine_for, open_stores, print_result


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the run id")
    add_engine_flags(p)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    stores = open_stores(args)
    progress = Progress(args.output == "json")
    engine = engine_for(args, stores, [], progress)

    async def go() -> Any:
        try:
            return await engine.resume(args.run)
        finally:
            await engine.close()

    try:
        result = asyncio.run(go())
    finally:
        stores.extra["embedded"].close()
    return print_result(result, args.output == "json")
