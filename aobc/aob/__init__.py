"""`aob`: the operator's client for a running aobc control plane (`aobc serve`).

    aob run start workflow.json --inputs input.json
    aob logs stream RUN [--node NODE]
    aob approve TICKET approve|reject --reason "..."
    aob replay RUN --from NODE --mode freeze
    aob patch list RUN | show PATCH | approve PATCH | reject PATCH | propose RUN patch.json
    aob workflow validate workflow.json | list | deploy workflow.aob --tag main
    aob run list | show RUN | cancel RUN,  aob approvals list

The server and token come from `--server`/`AOB_SERVER` and `--token`/`AOB_TOKEN`. Every
command takes `--json`. Errors are one line on stderr (`aob: error: ... [code]`), exit 1;
usage errors exit 2. Only argparse is imported before a command runs, so `aob --help` is
quick: the HTTP client and everything else load inside the command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Final

#: Command -> (module, help). Modules are imported only when their command runs.
COMMANDS: Final = {
    "run": ("aobc.aob.run", "start, list, show and cancel runs"),
    "logs": ("aobc.aob.logs", "stream a run's events as they happen"),
    "approve": ("aobc.aob.approve", "approve or reject an approval ticket"),
    "approvals": ("aobc.aob.approve", "list open approval tickets"),
    "replay": ("aobc.aob.replay", "replay a run from a node (freeze or fresh)"),
    "patch": ("aobc.aob.patch", "list, show, propose, approve and reject live patches"),
    "workflow": ("aobc.aob.workflow", "validate, deploy and list workflows"),
}

DEFAULT_SERVER: Final = "http://127.0.0.1:8080"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}  [usage]\n")
        raise SystemExit(2)


def common(p: argparse.ArgumentParser) -> None:
    """Flags every command takes (after its name, where people type them)."""
    p.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    p.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"the control plane (default: $AOB_SERVER or {DEFAULT_SERVER})",
    )
    p.add_argument("--token", default=argparse.SUPPRESS, help="bearer token (default: $AOB_TOKEN)")


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="aob",
        description="Operate workflows on an aobc control plane.",
        epilog="Server and token: --server/AOB_SERVER, --token/AOB_TOKEN.",
    )
    parser.add_argument("--version", action="version", version="aob (aobc 0.1.0)")
    common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            common(p)
            importlib.import_module(module).register(p, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if a in COMMANDS), None)
    try:
        parser = build_parser(command)
        args = parser.parse_args(args_list)
        if args.command is None:
            parser.print_help()
            return 2
        args.server = (
            getattr(args, "server", None) or os.environ.get("AOB_SERVER") or DEFAULT_SERVER
        )
        args.token = getattr(args, "token", None) or os.environ.get("AOB_TOKEN")
        args.json = getattr(args, "json", False)
        from aobc.aob.client import ClientError, report

        try:
            code: int = args.handler(args)
            return code
        except ClientError as err:
            report(err)
            return 1
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:  # the promise: no traceback, ever
        sys.stderr.write(f"aob: error: {type(err).__name__}: {err}  [internal-error]\n")
        return 1
