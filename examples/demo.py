"""The end-to-end demo behind `./dev demo`, offline.

1. Explain what -O2 does to every example (a text report here, an HTML page with the graphs
   before and after in `out/`), and compile `support_triage.aob` to a `.aobir`.
2. Run `support_triage.aob` on the embedded store. Its agent node talks to a local server that
   speaks the OpenAI Chat Completions protocol, through aobc's real OpenAI client; the
   agent's answer drafts a reply and patches the running workflow to loop in an engineer.
   The run then stops at the human approval.
3. Approve the ticket with `aobc approve`, resume the run with `aobc resume`, and watch it
   finish; then replay it from the agent node in freeze mode.

Every step is the `aobc` command a user would type.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from aobc.testing.fakellm import Answer, FakeOpenAI

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
OUT = ROOT / "out"
AOBC = str(Path(sys.executable).with_name("aobc"))

DRAFT = {
    "output": {
        "reply": "Hi Dana, thanks for reporting this. Our engineers are looking into the failing "
        "export right now; we will restore the missing rows and follow up within the hour."
    },
    "patch": {
        "reason": "the customer reports data loss: loop in an engineer before anything is sent",
        "operations": [
            {
                "op": "add",
                "path": "/nodes/-",
                "value": {
                    "id": "loop_in_engineer",
                    "type": "function",
                    "effect": "effectful",
                    "fn": "handlers.support:notify_engineer",
                    "args": {"ticket": "${inputs.ticket}"},
                },
            },
            {"op": "add", "path": "/edges/-", "value": {"from": "draft", "to": "loop_in_engineer"}},
        ],
    },
}


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def aobc(*args: str, env: dict[str, str] | None = None) -> str:
    print("$ aobc " + " ".join(args), flush=True)
    out = subprocess.run([AOBC, *args], env=env, capture_output=True, text=True, check=False)
    sys.stdout.write(out.stdout)
    sys.stderr.write(out.stderr)
    if out.returncode != 0:
        raise SystemExit(f"aobc {args[0]} failed with exit code {out.returncode}")
    return out.stdout


def main() -> int:
    OUT.mkdir(exist_ok=True)
    step("1. explain what -O2 does to every example (an HTML page per example in out/)")
    for source in sorted(EXAMPLES.glob("*.aob")):
        aobc("explain", str(source), "-O2", "--html", str(OUT / f"{source.stem}.html"))
    compiled = OUT / "support_triage.aobir"
    aobc("compile", str(EXAMPLES / "support_triage.aob"), "-O2", "-o", str(compiled))

    store = OUT / "demo-store"
    shutil.rmtree(store, ignore_errors=True)
    outbox = OUT / "demo-outbox.jsonl"
    outbox.unlink(missing_ok=True)
    redraft = {
        "output": {"reply": DRAFT["output"]["reply"].replace("within the hour", "by 17:00 today")},
        "patch": None,
    }
    with FakeOpenAI([Answer(DRAFT), Answer(redraft)], api_key="sk-demo") as llm:
        env = {
            **os.environ,
            "AOBC_OPENAI_BASE_URL": llm.url,
            "OPENAI_API_KEY": "sk-demo",
            "AOBC_DEMO_OUTBOX": str(outbox),
        }
        step("2. run support_triage: the agent drafts a reply and patches the running workflow")
        out = aobc(
            "run",
            str(compiled),
            "--path",  # where the handlers live: a .aobir does not sit beside its sources
            str(EXAMPLES),
            "--inputs",
            str(EXAMPLES / "support_ticket.json"),
            "--store",
            str(store),
            "--no-wait",
            env=env,
        )
        ticket = re.search(r"approve (t-[0-9a-f]+)", out)
        run_id = re.search(r"resume (r-[0-9a-f]+)", out)
        if ticket is None or run_id is None:
            raise SystemExit("the run did not stop at its approval")
        print(
            f"(the local LLM server saw {len(llm.requests)} request(s) from the real OpenAI client)"
        )

        step("3. a support lead approves; the run resumes and sends the reply")
        aobc(
            "approve",
            ticket.group(1),
            "approve",
            "--reason",
            "reply reads well",
            "--by",
            "lead@support",
            "--store",
            str(store),
        )
        aobc("resume", run_id.group(1), "--store", str(store), env=env)
        aobc("runs", "show", run_id.group(1), "--store", str(store))

        step("4. replay from the agent node, freezing everything upstream; the new draft diverges")
        aobc(
            "replay",
            run_id.group(1),
            "--from",
            "draft",
            "--mode",
            "freeze",
            "--store",
            str(store),
            env=env,
        )

    sent = [json.loads(line) for line in outbox.read_text().splitlines()]
    print(
        f"\neffects recorded in {outbox.name}: "
        + ", ".join(f"{e['kind']} ({e['node']})" for e in sent)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
