"""Terminal output for `aob`: colour and spinners only on a terminal, NO_COLOR respected."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import IO, Any


def colour(stream: IO[str]) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def paint(text: str, code: str, stream: IO[str] | None = None) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour(stream or sys.stdout) else text


@contextlib.contextmanager
def spinner(label: str) -> Iterator[None]:
    """A spinner on stderr while the block runs, when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield
        return
    stop = threading.Event()

    def spin() -> None:
        for frame in itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"):
            sys.stderr.write(f"\r{frame} {label}")
            sys.stderr.flush()
            if stop.wait(0.08):
                break
        sys.stderr.write("\r\x1b[2K")
        sys.stderr.flush()

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def dump(value: Any) -> None:
    out(json.dumps(value, indent=2, sort_keys=True, default=str))


class EventPrinter:
    """One line per event, as `aobc run` prints them (its `Progress`), or JSON lines."""

    def __init__(self, as_json: bool) -> None:
        from aobc.cli.session import Progress

        self.as_json = as_json
        self.progress = Progress(as_json, sys.stdout)

    def __call__(self, data: dict[str, Any]) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps(data, sort_keys=True, default=str) + "\n")
            sys.stdout.flush()
            return
        base = {"run", "seq", "type", "time"}
        event = SimpleNamespace(
            run_id=data.get("run"),
            type=data.get("type"),
            data={k: v for k, v in data.items() if k not in base},
        )
        line = self.progress.describe(event)
        if line is None:
            line = f"  {paint('·', '90')} {data.get('type')}"
        if data.get("type") == "patch.held":
            pid = str(data.get("patch", {}).get("id", ""))
            line = (
                f"  {paint('~', '35')} patch {short(pid)} waits for an approver: "
                f"{data.get('reason')}  (aob patch approve {short(pid)})"
            )
        elif data.get("type") in ("patch.approved", "patch.rejected"):
            verdict = str(data["type"]).split(".")[1]
            line = f"  {paint('~', '35')} patch {short(data.get('patch'))} {verdict} by {data.get('by')}"
        out(line)


def when(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def short(digest: object) -> str:
    """The first 12 hex digits of a hash, with or without its `sha256:` prefix."""
    return str(digest).removeprefix("sha256:")[:12]
