"""Seeded random workflows that always verify: for property tests, benchmarks and pass tests.

`random_workflow(rng, n)` builds a DAG of `n` nodes in layers. Each node picks parents among
earlier nodes, so the graph is acyclic; expressions read only parents (so they are always
upstream); branch labels are ones their source can produce; joins wait for no more inputs
than they have; URLs use public example hosts. The same seed always gives the same workflow.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from aobc.ir import (
    AgentNode,
    ApprovalNode,
    CompositeNode,
    ConditionNode,
    Edge,
    Effect,
    FrozenDict,
    FunctionNode,
    HttpNode,
    InputDecl,
    JoinMode,
    JoinNode,
    MapNode,
    Node,
    OnTimeout,
    OutputDecl,
    Priority,
    RetryPolicy,
    TimerNode,
    ValueType,
    Workflow,
)

KINDS = ("function", "http", "condition", "join", "map", "agent", "approval", "timer", "composite")
HOSTS = ("api.example.com", "data.example.org", "crm.example.com")


@dataclass(frozen=True, slots=True)
class Shape:
    """How a generated workflow looks: kind weights, parents per node, nesting."""

    weights: tuple[float, ...] = (6, 3, 1, 1, 1, 0.5, 0.5, 0.5, 0.5)
    max_parents: int = 3
    nested: bool = True
    all_kinds: bool = True  # False: only pure functions (the interpreter benchmarks)


PURE_FUNCTIONS = Shape(weights=(1, 0, 0, 0, 0, 0, 0, 0, 0), nested=False)


def _effect(rng: random.Random) -> Effect:
    return rng.choice((Effect.PURE, Effect.PURE, Effect.IDEMPOTENT, Effect.EFFECTFUL))


def _common(rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {}
    r = rng.random()
    if r < 0.1:
        out["priority"] = rng.choice(list(Priority))
    if r < 0.2:
        out["timeout_ms"] = rng.choice((500, 5000, 60_000))
    if r < 0.15:
        out["retry"] = RetryPolicy(
            max_attempts=rng.randint(1, 4), backoff_ms=rng.choice((1000, 250))
        )
    return out


def _ref(rng: random.Random, parents: list[str]) -> str:
    if not parents:
        return "${inputs.x}"
    return "${" + rng.choice(parents) + "." + rng.choice(("value", "body", "items", "n")) + "}"


def _function(rng: random.Random, nid: str, parents: list[str]) -> Node:
    args = None
    if parents and rng.random() < 0.7:
        args = FrozenDict({f"a{i}": _ref(rng, parents) for i in range(rng.randint(1, 2))})
    return FunctionNode(
        id=nid,
        effect=_effect(rng),
        fn=f"pkg.mod{rng.randint(0, 9)}:f{rng.randint(0, 20)}",
        args=args,
        **_common(rng),
    )


def _http(rng: random.Random, nid: str, parents: list[str]) -> Node:
    method = rng.choice(("GET", "GET", "POST", "PUT"))
    effect = (
        Effect.IDEMPOTENT
        if method in ("GET", "PUT")
        else rng.choice((Effect.IDEMPOTENT, Effect.EFFECTFUL))
    )
    path = f"/v1/r{rng.randint(0, 50)}"
    if parents and rng.random() < 0.5:
        path += "?q=" + _ref(rng, parents)
    body = None
    if method != "GET" and rng.random() < 0.7:
        body = FrozenDict({"data": _ref(rng, parents), "n": rng.randint(0, 9)})
    return HttpNode(
        id=nid,
        effect=effect,
        method=method,
        url=f"https://{rng.choice(HOSTS)}{path}",
        body=body,
        batchable=rng.random() < 0.4,
        **_common(rng),
    )


def _condition(rng: random.Random, nid: str, parents: list[str]) -> Node:
    p = rng.choice(parents) if parents else None
    expr = f"{p}.n > {rng.randint(0, 9)}" if p else "inputs.n > 1"
    return ConditionNode(id=nid, effect=Effect.PURE, expr=expr)


def _agent(rng: random.Random, nid: str, parents: list[str]) -> Node:
    may_patch = rng.random() < 0.5
    return AgentNode(
        id=nid,
        effect=Effect.IDEMPOTENT,
        model=rng.choice(("gpt-4o-mini", "claude-sonnet-4")),
        prompt="Summarize " + _ref(rng, parents),
        provider=rng.choice(("openai", "anthropic", "scripted")),
        may_patch=may_patch,
        spawn_budget=rng.randint(0, 2) if may_patch else 0,
    )


def _approval(rng: random.Random, nid: str, parents: list[str]) -> Node:
    escalate = tuple(f"lead{i}" for i in range(rng.randint(0, 2)))
    return ApprovalNode(
        id=nid,
        effect=Effect.EFFECTFUL,
        approvers=("ops",),
        escalate=escalate,
        timeout_ms=3_600_000,
        on_timeout=rng.choice(list(OnTimeout)),
    )


def _timer(rng: random.Random, nid: str, parents: list[str]) -> Node:
    return TimerNode(id=nid, effect=Effect.PURE, duration_ms=rng.choice((1000, 60_000)))


def _map(rng: random.Random, nid: str, parents: list[str]) -> Node:
    over = f"{rng.choice(parents)}.items" if parents else "inputs.xs"
    body = FunctionNode(
        id="body", effect=_effect(rng), fn="pkg.each:f", args=FrozenDict({"x": "${item}"})
    )
    effect = body.effect if rng.random() < 0.7 else Effect.EFFECTFUL
    return MapNode(id=nid, effect=effect, over=over, body=body, concurrency=rng.randint(1, 16))


def _composite(rng: random.Random, nid: str, parents: list[str], shape: Shape) -> Node:
    sub = random_workflow(
        rng, rng.randint(1, 4), Shape(weights=(1, 1, 0, 0, 0, 0, 0, 0, 0), nested=False), name="sub"
    )
    return CompositeNode(
        id=nid, effect=Effect.EFFECTFUL, workflow=sub, args=FrozenDict({"x": _ref(rng, parents)})
    )


def _pick_kind(rng: random.Random, shape: Shape, i: int) -> str:
    kinds = KINDS if shape.nested else KINDS[:-1]
    weights = shape.weights[: len(kinds)]
    kind = rng.choices(kinds, weights=weights)[0]
    return "function" if kind == "join" and i == 0 else kind


def random_workflow(
    rng: random.Random, n: int, shape: Shape = Shape(), name: str = "generated"
) -> Workflow:
    """A verified-clean workflow of `n` top-level nodes."""
    nodes: list[Node] = []
    edges: list[Edge] = []
    for i in range(n):
        nid = f"n{i}"
        kind = _pick_kind(rng, shape, i)
        k = rng.randint(2 if kind == "join" else 0, shape.max_parents) if i else 0
        parents = sorted(set(rng.sample(range(max(0, i - 50), i), min(k, i)))) if i else []
        pids = [f"n{p}" for p in parents]
        # Expressions read only parents whose outputs are objects with fields (functions,
        # HTTP, agents); a join's or a condition's output has other shapes.
        data = [
            p for p in pids if isinstance(nodes[int(p[1:])], FunctionNode | HttpNode | AgentNode)
        ]
        if kind == "function":
            node = _function(rng, nid, data)
        elif kind == "http":
            node = _http(rng, nid, data)
        elif kind == "condition":
            node = _condition(rng, nid, data)
        elif kind == "join":
            mode = rng.choice(list(JoinMode))
            n_of = rng.randint(1, len(pids)) if mode is JoinMode.N_OF_M and pids else None
            node = JoinNode(
                id=nid,
                effect=Effect.PURE,
                mode=mode if n_of or mode is not JoinMode.N_OF_M else JoinMode.ALL,
                n=n_of,
            )
        elif kind == "map":
            node = _map(rng, nid, data)
        elif kind == "agent":
            node = _agent(rng, nid, data)
        elif kind == "approval":
            node = _approval(rng, nid, pids)
        elif kind == "timer":
            node = _timer(rng, nid, pids)
        else:
            node = _composite(rng, nid, data, shape)
        nodes.append(node)
        for p in pids:
            src = nodes[int(p[1:])]
            edges.append(Edge(src=p, dst=nid, label=_label(rng, src)))
    outputs: tuple[OutputDecl, ...] = ()
    if nodes:
        last = nodes[-1].id
        outputs = (OutputDecl(name="result", expr=last),)
    return Workflow(
        name=name,
        nodes=tuple(nodes),
        edges=tuple(edges),
        inputs=(
            InputDecl(name="n", type=ValueType.INT, default=2, required=False),
            InputDecl(name="x", type=ValueType.ANY, default=1, required=False),
            InputDecl(name="xs", type=ValueType.LIST, default=(1, 2, 3), required=False),
        ),
        outputs=outputs,
    )


def _label(rng: random.Random, src: Node) -> str | None:
    if isinstance(src, ConditionNode):
        return rng.choice(("true", "false", "else", None))
    if isinstance(src, ApprovalNode):
        return rng.choice(("approved", "rejected", None))
    return None
