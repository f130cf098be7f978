"""What the runtime commands share: the store, engine options, and live progress output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from aobc import errorcodes as ec
from aobc.cli.common import add_policy_flag, policy_from
from aobc.diagnostics import Diagnostic
from aobc.errors import AobcError


def add_store_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store", metavar="DIR", help="the embedded store (default: $AOBC_STORE or ./.aobc)"
    )
    p.add_argument(
        "--durable",
        action="store_true",
        help="fsync every commit of the embedded store, so a power cut loses nothing "
        "committed (default: $AOBC_DURABLE; else a crash of the process loses nothing, "
        "a power cut may lose the last commits)",
    )


_YES, _NO = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def durable(args: argparse.Namespace) -> bool:
    """Whether the embedded store fsyncs every commit: `--durable`, or AOBC_DURABLE=1."""
    if getattr(args, "durable", False):
        return True
    raw = os.environ.get("AOBC_DURABLE", "")
    if raw.strip().lower() in _YES:
        return True
    if raw.strip().lower() in _NO:
        return False
    raise AobcError(
        [
            Diagnostic.error(
                ec.STORE_CONFIG,
                f"AOBC_DURABLE is {raw!r}: say 1, true, yes or on, or 0, false, no or off",
            )
        ]
    )


def add_engine_flags(p: argparse.ArgumentParser, *, log_mode: bool = True) -> None:
    add_store_flag(p)
    add_policy_flag(p)
    if log_mode:
        p.add_argument(
            "--mode",
            choices=("full", "fast"),
            default="full",
            help="log every state change, or the minimum",
        )
    p.add_argument(
        "--no-wait", action="store_true", help="return when only human approvals are left"
    )
    p.add_argument(
        "--agent-script", metavar="FILE", help='answers for agents with provider "scripted"'
    )
    p.add_argument(
        "--secrets",
        metavar="FILE",
        help="secrets for `auth` (JSON or TOML); else AOBC_SECRET_<NAME>",
    )
    p.add_argument(
        "--path", action="append", default=[], metavar="DIR", help="also import functions from DIR"
    )
    p.add_argument(
        "--output", choices=("text", "json"), default="text", help="progress as text or JSON lines"
    )


def store_dir(args: argparse.Namespace) -> Path:
    from aobc.runtime.stores.embedded import default_store_dir

    return Path(args.store) if getattr(args, "store", None) else default_store_dir()


def open_stores(args: argparse.Namespace) -> Any:
    """The embedded stores, wrapped for the engine."""
    from aobc.runtime.engine import Stores
    from aobc.runtime.stores.embedded import EmbeddedStores

    directory = store_dir(args)
    es = EmbeddedStores.open(directory, durable=durable(args))
    return Stores(events=es.events, cas=es.cas, dir=directory, extra={"embedded": es})


def engine_for(
    args: argparse.Namespace, stores: Any, search: list[str], on_event: Callable[[Any], None] | None
) -> Any:
    from aobc.runtime.engine import Engine, EngineOptions
    from aobc.runtime.providers import ProviderConfig

    providers = ProviderConfig.from_env()
    if getattr(args, "agent_script", None):
        providers = providers.with_script(args.agent_script)
    secrets = None
    if getattr(args, "secrets", None):
        from aobc.runtime.executors.http import Secrets

        secrets = Secrets(args.secrets)
    options = EngineOptions(
        mode=getattr(args, "mode", "full"),
        policy=policy_from(args),
        wait_for_humans=not getattr(args, "no_wait", False),
        search_path=[*search, *getattr(args, "path", [])],
        providers=providers,
        secrets=secrets,
        on_event=on_event,
    )
    return Engine(stores, options)


class Progress:
    """Prints a run's events as they happen: compact text on a terminal, or JSON lines."""

    def __init__(self, as_json: bool, stream: IO[str] | None = None) -> None:
        self.as_json = as_json
        self.stream = stream or sys.stdout
        self.color = not as_json and self.stream.isatty() and "NO_COLOR" not in os.environ

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def __call__(self, event: Any) -> None:
        if self.as_json:
            self.stream.write(json.dumps(event.to_json(), sort_keys=True, default=str) + "\n")
            self.stream.flush()
            return
        line = self.describe(event)
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()

    def describe(self, e: Any) -> str | None:  # noqa: C901 - one arm per event type
        d = e.data
        run = e.run_id
        if e.type == "run.started":
            return self.paint(f"run {run}", "1") + f"  {d.get('name')}  ({d.get('mode')} mode)"
        if e.type == "node.started":
            return f"  {self.paint('>', '36')} {d['node']}" + (
                f"  (attempt {d['attempt']})" if d.get("attempt", 1) > 1 else ""
            )
        if e.type == "node.succeeded":
            how = " (cached)" if d.get("cached") else " (frozen)" if d.get("frozen") else ""
            return f"  {self.paint('ok', '32')} {d['node']}{how}"
        if e.type == "node.failed":
            tag = "failed" if d.get("final") else "retrying"
            return f"  {self.paint(tag, '31' if d.get('final') else '33')} {d['node']}: {d.get('error')}"
        if e.type == "node.skipped":
            return f"  {self.paint('--', '90')} {d['node']} skipped"
        if e.type == "ticket.opened":
            who = ", ".join(d.get("approvers", []))
            msg = f": {d['message']}" if d.get("message") else ""
            return (
                f"  {self.paint('?', '35')} approval {d['ticket']} for {d['node']} (ask {who}){msg}"
            )
        if e.type == "ticket.escalated":
            return f"  {self.paint('!', '35')} approval {d['ticket']} escalated to {', '.join(d.get('approvers', []))}"
        if e.type == "ticket.decided":
            return (
                f"  {self.paint('=', '35')} approval {d['ticket']} {d['decision']} by {d.get('by')}"
            )
        if e.type == "timer.scheduled":
            return f"  {self.paint('z', '36')} {d['node']} sleeps until {d['wake_at']:.0f}"
        if e.type == "patch.proposed":
            p = d["patch"]
            pid = str(p.get("id", ""))[7:19]
            return f"  {self.paint('~', '33')} patch {pid} proposed by {d.get('source')}: {p.get('reason', '')}"
        if e.type == "patch.applied":
            return f"  {self.paint('~', '32')} patch applied: new version {d['version'][7:19]}"
        if e.type == "patch.refused":
            why = "; ".join(x["message"] for x in d.get("diagnostics", [])[:2])
            return f"  {self.paint('~', '31')} patch refused: {why}"
        if e.type == "run.succeeded":
            return self.paint(f"run {run} succeeded", "32;1")
        if e.type == "run.failed":
            return self.paint(f"run {run} failed: {d.get('error')}", "31;1")
        if e.type == "run.cancelled":
            return self.paint(f"run {run} cancelled by {d.get('by')}", "33;1")
        return None


def print_result(result: Any, as_json: bool) -> int:
    if as_json:
        sys.stdout.write(
            json.dumps({"result": result.to_json()}, sort_keys=True, default=str) + "\n"
        )
    elif result.status == "succeeded":
        sys.stdout.write(
            json.dumps(result.outputs, indent=2, ensure_ascii=False, default=str) + "\n"
        )
    elif result.status == "waiting":
        for t in result.waiting:
            sys.stdout.write(
                f"waiting for approval {t['ticket']} ({', '.join(t['approvers'])}); decide with:\n"
                f'  aobc approve {t["ticket"]} approve --reason "..."   then: aobc resume {result.run_id}\n'
            )
    return 0 if result.status in ("succeeded", "waiting") else 1


def read_inputs(text: str | None) -> dict[str, Any]:
    """`--inputs` is a JSON object, or the path of a file holding one."""
    from aobc import errorcodes as ec
    from aobc.diagnostics import Diagnostic
    from aobc.errors import AobcError
    from aobc.source import JsonLoc

    if not text:
        return {}
    source = text
    if not text.lstrip().startswith("{") and Path(text).exists():
        source = Path(text).read_text(encoding="utf-8")
    try:
        value = json.loads(source)
    except json.JSONDecodeError as err:
        raise AobcError(
            Diagnostic.error(
                ec.JSON_SYNTAX, f"--inputs is not JSON: {err.msg.lower()}", JsonLoc("<inputs>", "")
            )
        ) from None
    if not isinstance(value, dict):
        raise AobcError(
            Diagnostic.error(
                ec.WRONG_TYPE, "--inputs must be a JSON object", JsonLoc("<inputs>", "")
            )
        )
    return value
