"""`aobc verify-opt FILE [--patch P]... [-O2|--passes ...]`: check an optimization by running it.

Runs the workflow before and after the pipeline in deterministic worlds (generated inputs,
fake functions, HTTP and agents that answer by what they are asked) and checks that the
optimized one refines the original: same outputs, same effectful calls, same order where
the workflow orders them. A counterexample is reduced to a small workflow and printed.
"""

from __future__ import annotations

import argparse
import json
import sys

from aobc.cli.common import Reporter, add_output_flag, add_patch_flags, add_policy_flag, policy_from


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a workflow (.aob or .json)")
    add_patch_flags(p)
    opt = p.add_mutually_exclusive_group()
    opt.add_argument(
        "-O", dest="opt", choices=("0", "1", "2"), help="preset pipeline (default -O2)"
    )
    opt.add_argument("--passes", metavar="PIPELINE")
    p.add_argument("--seeds", type=int, default=8, help="worlds (inputs and answers) to try")
    add_policy_flag(p)
    add_output_flag(p)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from aobc.driver import materialize_file
    from aobc.frontend.printer import to_dsl
    from aobc.passes.pipeline import pipeline_for
    from aobc.tv import validate

    policy = policy_from(args)
    pipeline = pipeline_for(args.passes, f"O{args.opt or '2'}")
    comp = materialize_file(args.file, args.patches, policy, args.rollback)
    found = validate(comp.workflow, pipeline, seeds=args.seeds, policy=policy)
    if reporter.json:
        out = {
            "file": args.file,
            "pipeline": pipeline,
            "seeds": args.seeds,
            "refines": found is None,
        }
        if found is not None:
            out["counterexample"] = found.to_json()
            out["workflow"] = to_dsl(found.workflow) if found.workflow else None
        sys.stdout.write(json.dumps(out) + "\n")
    elif found is None:
        sys.stdout.write(f"{args.file}: {pipeline} refines the original in {args.seeds} worlds\n")
    else:
        sys.stdout.write(
            f"{args.file}: {pipeline} changes what the workflow does: {found.reason}\n"
        )
        sys.stdout.write(f"  inputs {json.dumps(found.inputs)}, world seed {found.seed}\n")
        if found.workflow is not None:
            sys.stdout.write("  smallest workflow that still shows it:\n")
            sys.stdout.write(
                "".join(f"    {line}\n" for line in to_dsl(found.workflow).splitlines())
            )
    return 0 if found is None else 1
