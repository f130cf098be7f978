"""The `aobc` command. `main(argv)` is the only entry point, so tests can call it in-process.

Exit codes: 0 clean (warnings allowed), 1 errors reported, 2 usage errors. No traceback ever
reaches the user: an unexpected failure is reported as an `internal-error` diagnostic with
the path of a crash report.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from typing import Final

from aobc import __version__
from aobc import errorcodes as ec
from aobc.cli.common import Reporter
from aobc.cli.plugins import add_plugin_flag, plugin_scope, takes_passes
from aobc.diagnostics import Diagnostic
from aobc.errors import AobcError

#: Subcommand name -> module, imported only when that subcommand runs (fast --help).
COMMANDS: Final = {
    "compile": ("aobc.cli.compile", "compile a workflow (with overlays) to IR"),
    "explain": ("aobc.cli.explain", "report what the optimizer did, where, why, and what it saved"),
    "validate": ("aobc.cli.validate", "check a workflow and its overlays; report every problem"),
    "fmt": ("aobc.cli.fmt", "print a workflow as canonical DSL (or JSON)"),
    "show": ("aobc.cli.show", "print a compiled .aobir file as text"),
    "patch": ("aobc.cli.patch", "apply or diff RFC 6902 JSON patches"),
    "passes": ("aobc.cli.list_passes", "list the registered passes and their options"),
    "pass": ("aobc.cli.pass_cmd", "write your own pass: new, build and test one (docs/plugins.md)"),
    "verify-opt": (
        "aobc.cli.verify_opt",
        "check by running it that an optimization preserves behaviour",
    ),
    "run": ("aobc.cli.run", "run a workflow in this process, on the embedded store"),
    "runs": ("aobc.cli.runs", "list runs, show one, or print its timeline"),
    "resume": ("aobc.cli.resume", "continue a run from where it stopped"),
    "cancel": ("aobc.cli.cancel", "cancel a run"),
    "approve": ("aobc.cli.approve", "approve or reject a pending approval"),
    "replay": ("aobc.cli.replay", "re-execute a run from a node and report what diverged"),
    "serve": ("aobc.cli.serve", "serve the HTTP control plane (API, SSE timelines, metrics)"),
    "deploy": ("aobc.cli.deploy", "register a compiled workflow with the distributed runtime"),
    "start": ("aobc.cli.start", "start a run for the distributed runtime's coordinators"),
    "coordinator": ("aobc.cli.coordinator", "drive runs on Kafka, Postgres, S3 and Redis"),
    "worker": ("aobc.cli.worker", "run node jobs from Kafka for the coordinators"),
    "agent-runner": ("aobc.cli.agent_runner", "answer agent nodes' LLM calls from agent.jobs"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}  [usage]\n")
        raise SystemExit(2)


def version_text() -> str:
    try:
        from aobc.runtime import IMPLEMENTATION
    except ImportError:
        IMPLEMENTATION = "none"
    return f"aobc {__version__} (interpreter core: {IMPLEMENTATION})"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="aobc", description="A compiler and runtime for agentic workflows.")
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        if command is None or name != command:
            sub.add_parser(name, help=help_text, description=help_text)
        else:
            mod = importlib.import_module(module)
            cmd = sub.add_parser(name, help=help_text, description=help_text)
            mod.register(cmd)
            if takes_passes(cmd):
                add_plugin_flag(cmd)
    return parser


def _crash_report() -> str:
    fd, path = tempfile.mkstemp(prefix="aobc-crash-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"aobc {__version__}\nargv: {sys.argv!r}\n\n{traceback.format_exc()}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if not a.startswith("-")), None)
    command = command if command in COMMANDS else None
    reporter = Reporter.from_args(args_list)
    try:
        parser = build_parser(command)
        args = parser.parse_args(args_list)
        if args.command is None:
            parser.print_help()
            return 2
        module = importlib.import_module(COMMANDS[args.command][0])
        with plugin_scope(args):
            code: int = module.run(args, reporter)
        return code
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    except AobcError as err:
        reporter.diagnostics(err.diagnostics)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:  # the promise: never a traceback
        path = _crash_report()
        reporter.diagnostics(
            [
                Diagnostic.error(
                    ec.INTERNAL,
                    f"aobc failed unexpectedly ({type(err).__name__}: {err})",
                    None,
                    Diagnostic.note(
                        f"a crash report was written to {path}; please include it in a bug report"
                    ),
                )
            ]
        )
        return 1
