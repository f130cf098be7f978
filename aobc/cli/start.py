"""`aobc start WORKFLOW [--input k=v ...]`: create a run in Postgres for a coordinator to drive.

WORKFLOW is a deployed IR hash (`aobc deploy`) or a workflow file (compiled and stored first).
Prints the run id; with `--wait`, waits for the run to end and prints its outputs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from aobc.cli.cluster import add_cluster_flags, store_config, store_errors
from aobc.cli.common import Reporter

_DIGEST = re.compile(r"[0-9a-f]{64}")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("workflow", help="a deployed IR hash, or a workflow file")
    p.add_argument(
        "--input", action="append", default=[], metavar="K=V",
        help="one input (V is JSON, or else a string); repeatable",
    )  # fmt: skip
    p.add_argument("--inputs", metavar="JSON", help="the inputs as a JSON object or file")
    p.add_argument("--idempotency-key", metavar="KEY", help="start at most one run for this key")
    p.add_argument("--priority", choices=("high", "medium", "low"), help="its jobs' queue")
    p.add_argument("--mode", choices=("full", "fast"), default="full", help="event fidelity")
    p.add_argument("--wait", action="store_true", help="wait for the run to end; print outputs")
    p.add_argument("--output", choices=("text", "json"), default="text", help="output format")
    add_cluster_flags(p)


def parse_inputs(args: argparse.Namespace) -> dict[str, Any]:
    from aobc import errorcodes as ec
    from aobc.cli.session import read_inputs
    from aobc.diagnostics import Diagnostic
    from aobc.errors import AobcError
    from aobc.source import JsonLoc

    inputs = read_inputs(args.inputs)
    for pair in args.input:
        name, eq, text = pair.partition("=")
        if not eq or not name:
            raise AobcError(
                Diagnostic.error(
                    ec.INVALID_VALUE, f"--input {pair!r} is not K=V", JsonLoc("<inputs>", "")
                )
            )
        try:
            inputs[name] = json.loads(text)
        except json.JSONDecodeError:
            inputs[name] = text
    return inputs


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from aobc.cli.session import print_result
    from aobc.runtime.coordinator import notify_new_runs
    from aobc.runtime.engine import Engine, EngineOptions, Stores
    from aobc.runtime.stores.postgres import PostgresEventLog
    from aobc.runtime.stores.s3 import S3CAS

    inputs = parse_inputs(args)
    config = store_config(args, "postgres", "s3")
    with store_errors():
        events = PostgresEventLog(config.postgres)
        cas = S3CAS(config.s3)
        try:
            search: list[str] = []
            engine = Engine(Stores(events, cas), EngineOptions(mode=args.mode))
            if _DIGEST.fullmatch(args.workflow):
                ir = engine.load_ir(args.workflow)
            else:
                from aobc.cli.run import compile_ir

                ns = argparse.Namespace(
                    file=args.workflow, opt=None, patches=[], rollback=[], policy=None
                )
                ir = compile_ir(ns, reporter)
                search = [str(Path(args.workflow).resolve().parent)]
            labels = {"priority": args.priority} if args.priority else None
            first = engine.create(
                ir, inputs, idempotency_key=args.idempotency_key, labels=labels,
                search_path=search,
            )  # fmt: skip
            run_id = first[0].run_id
            notify_new_runs(events._conn(), events.schema, [run_id])
            if not args.wait:
                sys.stdout.write(f"{run_id}\n")
                return 0
            return print_result(wait_for(events, run_id), args.output == "json")
        finally:
            cas.close()
            events.close()


def wait_for(events: Any, run_id: str, interval: float = 0.05) -> Any:
    """The run's result once it has ended (or waits for a person)."""
    from aobc.runtime.driver import RunResult
    from aobc.runtime.state import RunState

    while True:
        record = events.get_run(run_id)
        if record is not None and record.status not in ("running",):
            state = RunState.fold(run_id, events.read(run_id))
            return RunResult(run_id, state.status, state.output_value, state.error)
        time.sleep(interval)  # a CLI waiting for a person-scale event, not a test
