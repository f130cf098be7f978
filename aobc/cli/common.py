"""What every subcommand shares: printing diagnostics, common flags, reading policies."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic, render_json, render_text, summary_line
from aobc.errors import AobcError
from aobc.policy import DEFAULT_POLICY, Policy
from aobc.source import JsonLoc, SourceFile, Span


def _walk(diags: Iterable[Diagnostic]) -> Iterable[Diagnostic]:
    for d in diags:
        yield d
        yield from _walk(d.notes)


@dataclass
class Reporter:
    """Prints diagnostics as text (with carets) or JSON lines."""

    json: bool = False
    sources: dict[str, SourceFile] = field(default_factory=dict)

    @staticmethod
    def from_args(argv: Sequence[str]) -> Reporter:
        # Read --output before argparse runs, so even usage errors honour it.
        as_json = False
        for i, arg in enumerate(argv):
            if arg == "--output" and i + 1 < len(argv):
                as_json = argv[i + 1] == "json"
            elif arg.startswith("--output="):
                as_json = arg.split("=", 1)[1] == "json"
        return Reporter(json=as_json)

    def add_sources(self, sources: dict[str, SourceFile]) -> None:
        self.sources.update(sources)

    def _load_missing_sources(self, diags: Sequence[Diagnostic]) -> None:
        for d in _walk(diags):
            if isinstance(d.loc, Span) and d.loc.file not in self.sources:
                try:
                    text = Path(d.loc.file).read_text(encoding="utf-8-sig")
                except (OSError, UnicodeDecodeError):
                    continue
                self.sources[d.loc.file] = SourceFile.of(d.loc.file, text)

    def diagnostics(
        self, diags: Sequence[Diagnostic], stream: IO[str] | None = None, summary: bool = False
    ) -> None:
        out = stream if stream is not None else sys.stderr
        if self.json:
            out.write(render_json(diags))
            return
        self._load_missing_sources(diags)
        out.write(render_text(diags, self.sources))
        if summary and diags:
            out.write(f"{summary_line(diags)}\n")


def add_output_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="diagnostics as text or JSON lines",
    )


def add_policy_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--policy", metavar="FILE", help="limits, agent budgets and SSRF allowlist (TOML or JSON)"
    )


def add_patch_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--patch",
        dest="patches",
        action="append",
        default=[],
        metavar="PATCH",
        help="apply an overlay (repeatable, in order)",
    )
    p.add_argument(
        "--rollback",
        action="append",
        default=[],
        metavar="PATCH",
        help="leave out a patch (by id, id prefix or file name); later patches are rebased",
    )


def policy_from(args: argparse.Namespace) -> Policy:
    path = getattr(args, "policy", None)
    return Policy.load(path) if path else DEFAULT_POLICY


def write_output(path: str | None, data: str | bytes) -> None:
    """Write to a regular file (atomically), to a device or pipe (in place), or to stdout.

    A temporary file renamed over the target is what makes a regular file's write atomic,
    but renamed over `/dev/null` or a named pipe it would replace the device with a file.
    """
    if path is None or path == "-":
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            sys.stdout.write(data)
        return
    import os
    import stat
    import tempfile

    target = Path(path)
    raw = data if isinstance(data, bytes) else data.encode("utf-8")
    try:
        special = not stat.S_ISREG(target.stat().st_mode)
    except OSError:
        special = False  # absent (or unreadable): create it below
    if special:
        try:
            with target.open("wb") as f:
                f.write(raw)
        except OSError as err:
            raise _io_error(target, err) from None
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as err:
        raise _io_error(target, err) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _io_error(target, err) from None


def _io_error(path: Path, err: OSError) -> AobcError:
    reason = (err.strerror or str(err)).lower()
    return AobcError(
        Diagnostic.error(
            ec.IO_ERROR, f"cannot write {str(path)!r}: {reason}", JsonLoc(str(path), "")
        )
    )
