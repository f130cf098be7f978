"""`aobc pass new|build|test`: write, build and test a pass of your own (docs/plugins.md).

    aobc pass new my-pass --lang zig      # a working project in ./my-pass
    aobc pass build                       # compile it (zig, c) or import-check it (python)
    aobc pass test                        # golden cases, then translation validation

The project's layout and settings are in its aobc-pass.toml (see aobc.kit.project).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aobc.cli.common import Reporter
from aobc.kit.project import LANGS


def register(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = sub.add_parser("new", help="scaffold a working pass project")
    new.add_argument("name", help="the pass name, kebab-case (my-pass)")
    new.add_argument("--lang", choices=LANGS, required=True)
    new.add_argument("--dir", default=".", help="where to create the project (default: here)")
    build = sub.add_parser("build", help="build the pass project here (or in DIR)")
    build.add_argument("dir", nargs="?", default=".")
    test = sub.add_parser("test", help="run its golden cases, then translation validation")
    test.add_argument("dir", nargs="?", default=".")
    test.add_argument("--update", action="store_true", help="rewrite the golden sections")
    test.add_argument("--seeds", type=int, help="generated workflows to validate on")
    test.add_argument("--nodes", type=int, help="their size")
    test.add_argument(
        "--no-tv", action="store_true", help="golden cases only, no translation validation"
    )


def _log(text: str) -> None:
    sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from aobc.kit import check
    from aobc.kit.project import load_project

    if args.action == "new":
        from aobc.kit.scaffold import new_pass

        root = new_pass(args.name, args.lang, Path(args.dir))
        _log(f"created {root} ({args.lang}); next: cd {root} && aobc pass build && aobc pass test")
        return 0
    project = load_project(Path(args.dir))
    if args.action == "build":
        check.build(project, _log)
        return 0
    if project.wasm and check.stale(project):
        check.build(project, _log)
    with check.registered(project):
        report = check.run_goldens(project, args.update, _log)
        if not args.no_tv and not args.update:
            tv = check.run_tv(
                project, args.seeds or project.seeds, args.nodes or project.nodes, _log
            )
            report.passed += tv.passed
            report.failed += tv.failed
    _log(f"{report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0
