"""`aobc passes [--json]`: every registered pass, with its options and defaults."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from aobc.cli.common import Reporter, add_output_flag
from aobc.passes.pipeline import PRESETS
from aobc.passes.registry import available_passes, load_pass_class, pass_options


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable list")
    add_output_flag(p)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    rows: list[dict[str, Any]] = []
    for name, target in sorted(available_passes().items()):
        cls = load_pass_class(target)
        rows.append(
            {
                "name": name,
                "target": target,
                "summary": cls.summary,
                "required": cls.required,
                "transforms": cls.transforms,
                "options": [
                    {"name": o.name, "type": o.type_name, "default": o.default, "help": o.help}
                    for o in pass_options(cls)
                ],
            }
        )
    if args.json:
        sys.stdout.write(json.dumps({"passes": rows, "presets": PRESETS}, indent=2) + "\n")
        return 0
    for r in rows:
        flags = " (required)" if r["required"] else ""
        sys.stdout.write(f"{r['name']}{flags}\n    {r['summary']}\n")
        for o in r["options"]:
            sys.stdout.write(
                f"    {o['name']}={o['type']}  (default {json.dumps(o['default'])}) {o['help']}\n"
            )
    sys.stdout.write("\npresets\n")
    for level, text in PRESETS.items():
        sys.stdout.write(f"    -{level}  {text}\n")
    return 0
