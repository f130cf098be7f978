"""End to end, one workflow per node kind and per runtime rule, on the embedded store."""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

import pytest
import wf_functions
from harness import Harness

from aobc.errors import ExecutionError
from aobc.runtime import engine as engine_module
from aobc.runtime.engine import _new_run_id


def test_function_nodes_receive_inputs_and_a_context(harness: Harness) -> None:
    result = harness.run(
        """
        workflow f {
          input x: int = 4
          output a = a
          output b = b
          a = function "wf_functions:inc" { effect: pure, args: { x: inputs.x } }
          b = function "wf_functions:echo" { effect: idempotent }
          a -> b
        }
        """
    )
    assert result.status == "succeeded"
    assert result.outputs["a"] == {"value": 5}
    b = result.outputs["b"]
    assert b["inputs"] == {"a": {"value": 5}}  # no args: the predecessors' outputs by id
    assert (b["run"], b["node"]) == (result.run_id, "b")
    assert len(b["key"]) == 32


def test_async_functions_and_map_concurrency_limit(harness: Harness) -> None:
    wf_functions.ACTIVE.update(now=0, max=0)
    result = harness.run(
        """
        workflow m {
          output doubled = each
          src = function "wf_functions:echo" { effect: pure, args: { items: [1, 2, 3, 4, 5, 6, 7] } }
          each = map src.inputs.items {
            concurrency: 2
            body: function "wf_functions:slow_double" { effect: pure, args: { x: "${item}" } }
          }
          src -> each
        }
        """
    )
    assert result.status == "succeeded"
    assert result.outputs["doubled"] == [{"value": v * 2} for v in range(1, 8)]
    assert wf_functions.ACTIVE["max"] == 2


JOINS = """
workflow j {
  output all_ = all_
  output any_ = any_
  output two = two
  a = function "wf_functions:inc" { effect: pure, args: { x: 1 } }
  gate = condition a.value > 1
  b = function "wf_functions:inc" { effect: pure, args: { x: 10 } }
  c = function "wf_functions:inc" { effect: pure, args: { x: 20 } }
  all_ = join all
  any_ = join any
  two = join 2
  a -> gate
  gate -[true]-> b
  gate -[false]-> c
  b -> all_
  c -> all_
  b -> any_
  c -> any_
  a -> two
  b -> two
  c -> two
}
"""


def test_joins_and_condition_branches(harness: Harness) -> None:
    result = harness.run(JOINS)
    assert result.status == "succeeded"
    out = result.outputs
    assert out["all_"] == {"b": {"value": 11}}  # c was skipped; join all runs on what ran
    assert out["any_"] == {"b": {"value": 11}}
    assert set(out["two"]) == {"a", "b"}
    skipped = {d["node"] for d in harness.events(result.run_id, "node.skipped")}
    assert skipped == {"c"}


def test_edge_guards_and_else(harness: Harness) -> None:
    result = harness.run(
        """
        workflow g {
          input n: int
          output hi = hi
          output lo = lo
          output other = other
          kind = condition "big" if inputs.n > 10 else ("small" if inputs.n < 0 else "mid")
          hi = function "wf_functions:inc" { effect: pure, args: { x: inputs.n } }
          lo = function "wf_functions:inc" { effect: pure, args: { x: 0 } }
          other = function "wf_functions:inc" { effect: pure, args: { x: -1 } }
          kind -[big when inputs.n != 99]-> hi
          kind -[small]-> lo
          kind -[else]-> other
        }
        """,
        {"n": 3},
    )
    assert result.outputs == {"hi": None, "lo": None, "other": {"value": 0}}


def test_composite_runs_a_sub_workflow_as_a_child_run(harness: Harness) -> None:
    result = harness.run(
        """
        workflow c {
          output r = sub
          sub = composite workflow inner {
            input y: int
            output z = twice.value
            once = function "wf_functions:inc" { effect: pure, args: { x: inputs.y } }
            twice = function "wf_functions:inc" { effect: pure, args: { x: once.value } }
            once -> twice
          } { args: { y: 40 } }
        }
        """
    )
    assert result.outputs == {"r": {"z": 42}}
    children = [r for r in harness.stores.events.list_runs() if r.parent == result.run_id]
    assert [c.run_id for c in children] == [f"{result.run_id}/sub"]
    assert children[0].status == "succeeded"


def test_retries_then_success_and_final_failure(harness: Harness) -> None:
    ok = harness.run(
        """
        workflow r {
          output a = a
          a = function "wf_functions:flaky" {
            effect: effectful, args: { fails: 2 }, retry: { max_attempts: 3, backoff: 1ms }
          }
        }
        """
    )
    assert ok.status == "succeeded"
    assert ok.outputs["a"] == {"attempt": 3}
    retries = harness.events(ok.run_id, "node.failed")
    assert [d["final"] for d in retries] == [False, False]
    bad = harness.run(
        'workflow b { a = function "wf_functions:boom" { effect: pure, retries: 1 } }'
    )
    assert bad.status == "failed"
    assert "it broke" in (bad.error or "")
    assert harness.stores.events.get_run(bad.run_id).status == "failed"  # type: ignore[union-attr]


def test_non_json_output_fails_the_node_with_a_clear_error(harness: Harness) -> None:
    result = harness.run(
        'workflow n { output o = a\n a = function "wf_functions:not_json" { effect: pure } }'
    )
    assert result.status == "failed"
    assert "set" in (result.error or "")


def test_inputs_are_checked_before_anything_runs(harness: Harness) -> None:
    with pytest.raises(ExecutionError) as err:
        harness.run(
            'workflow i { input n: int\n a = function "wf_functions:inc" { effect: pure } }',
            {"n": "x", "m": 1},
        )
    messages = [d.message for d in err.value.diagnostics]
    assert any('"n" must be int' in m for m in messages)
    assert any('"m" is not declared' in m for m in messages)


def test_run_ids_are_random_and_a_forked_child_makes_its_own() -> None:
    # Made ahead in blocks (one read of the OS's randomness per 256): all distinct, and a
    # child process forked with ids left in its parent's block does not repeat them.
    ids = [_new_run_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"r-[0-9a-f]{16}", i) for i in ids)
    if not engine_module._RUN_IDS:
        _new_run_id()  # now some are left to hand out: what the child must not repeat
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write, " ".join(_new_run_id() for _ in range(300)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    assert os.waitpid(pid, 0)[1] == 0
    parent = [_new_run_id() for _ in range(300)]
    assert len(child) == 300 and not set(child) & set(parent)


def test_pure_outputs_are_memoized_across_runs_and_keyed_by_config(harness: Harness) -> None:
    src = 'workflow p {{ output o = a\n a = function "wf_functions:counted" {{ effect: pure, args: {{ x: {} }} }} }}'
    wf_functions.COUNTER["pure"] = 0
    first = harness.run(src.format(2))
    second = harness.run(src.format(2))
    assert first.outputs == second.outputs == {"o": {"value": 20}}
    assert wf_functions.COUNTER["pure"] == 1
    assert harness.events(second.run_id, "node.succeeded")[0].get("cached") is True
    harness.run(src.format(3))  # other inputs: another key
    assert wf_functions.COUNTER["pure"] == 2
    changed = src.format(2).replace("effect: pure,", "effect: pure, timeout: 5s,")
    harness.run(changed)  # same inputs, another config: another key
    assert wf_functions.COUNTER["pure"] == 3


def test_fast_mode_logs_the_minimum(harness: Harness) -> None:
    text = """
    workflow fm {
      output o = c
      a = function "wf_functions:inc" { effect: pure, args: { x: 1 } }
      b = function "wf_functions:inc" { effect: pure, args: { x: a.value } }
      c = function "wf_functions:record" { effect: effectful, args: { v: b.value } }
      a -> b -> c
    }
    """
    fast = harness.run(text, mode="fast")
    full = harness.run(text, mode="full")
    assert fast.outputs == {"o": {"done": "c", "key": fast.outputs["o"]["key"]}}
    assert harness.types(fast.run_id) == [
        "run.started",
        "node.started",
        "node.succeeded",
        "run.succeeded",
    ]
    assert len(harness.types(full.run_id)) > len(harness.types(fast.run_id))


def test_cancel_stops_a_waiting_run(harness: Harness) -> None:
    from aobc.runtime.commands import cancel

    text = """
    workflow w {
      ask = approval { approvers: ["ops"] }
      after = function "wf_functions:record" { effect: effectful }
      ask -[approved]-> after
    }
    """
    waiting = harness.run(text, wait_for_humans=False)
    assert waiting.status == "waiting"
    assert cancel(Stores_of(harness), waiting.run_id, "tester", "no longer needed") == "cancelled"
    st = harness.state(waiting.run_id)
    assert st.status == "cancelled"
    assert st.cancel == {"by": "tester", "reason": "no longer needed"}
    assert harness.resume(waiting.run_id).status == "cancelled"


def Stores_of(h: Harness) -> Any:
    from aobc.runtime.engine import Stores

    return Stores(h.stores.events, h.stores.cas, h.dir)


def test_cancel_reaches_a_run_being_driven(harness: Harness) -> None:
    from aobc.runtime.commands import cancel

    text = """
    workflow w {
      ask = approval { approvers: ["ops"] }
      after = function "wf_functions:record" { effect: effectful }
      ask -> after
    }
    """
    engine = harness.engine()
    ir = harness.compile(text)

    async def go() -> Any:
        task = asyncio.create_task(engine.start(ir, {}))
        while not any(e.type == "ticket.opened" for e in harness.seen):
            await asyncio.sleep(0)  # yield to the engine until it is waiting (no clock involved)
        run_id = harness.seen[0].run_id
        assert cancel(Stores_of(harness), run_id, "tester", "stop") == "cancelling"
        return await task

    result = asyncio.run(go())
    assert result.status == "cancelled"
    assert "after" not in harness.state(result.run_id).done
