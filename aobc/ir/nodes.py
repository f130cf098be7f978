"""The workflow IR: immutable, typed, and equal however it was written.

A `Workflow` is a graph of `Node`s joined by `Edge`s, with declared inputs and outputs. Every
node kind is a `@final` frozen dataclass; locations ride along but never take part in
equality, so the same workflow loaded from DSL and from JSON compares equal.

Expressions (conditions, guards, outputs, map sources) are held as their canonical source
text, and templates (`"https://x/${inputs.id}"`) as canonical template text; both are parsed
and normalized by the loader, so two spellings of one expression give equal IR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Final, final

from aobc.ir.values import EMPTY, FrozenDict
from aobc.source import JsonLoc, Loc


class NodeKind(StrEnum):
    HTTP = "http"
    FUNCTION = "function"
    MAP = "map"
    JOIN = "join"
    CONDITION = "condition"
    COMPOSITE = "composite"
    AGENT = "agent"
    APPROVAL = "approval"
    TIMER = "timer"


class Effect(StrEnum):
    """What running a node does to the world; decides which rewrites and replays are legal."""

    PURE = "pure"  # output depends only on inputs; no side effects; may be cached and merged
    IDEMPOTENT = "idempotent"  # may repeat safely (GET, upsert by key); never reordered freely
    EFFECTFUL = "effectful"  # must run exactly once per run; never dropped, duplicated, moved


class Priority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class JoinMode(StrEnum):
    ALL = "all"
    ANY = "any"
    N_OF_M = "n_of_m"


class OnTimeout(StrEnum):
    """What an approval does when its last escalation level times out."""

    APPROVE = "approve"
    REJECT = "reject"
    FAIL = "fail"


class ValueType(StrEnum):
    """Declared types of workflow inputs."""

    STR = "str"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    LIST = "list"
    DICT = "dict"
    ANY = "any"


HTTP_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
BATCH: Final = "BATCH"


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often a failed attempt is retried, with exponential backoff and full jitter."""

    max_attempts: int = 1
    backoff_ms: int = 1000
    max_backoff_ms: int = 30_000
    multiplier: float = 2.0


NO_RETRY: Final = RetryPolicy()


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """Base of all workflow nodes. Concrete kinds are @final and never subclassed."""

    KIND: ClassVar[NodeKind]
    id: str
    effect: Effect
    priority: Priority = Priority.MEDIUM
    timeout_ms: int | None = None
    retry: RetryPolicy = NO_RETRY
    cost_ms: int | None = None  # the author's estimate of how long the node takes
    cache: FrozenDict[str, Any] | None = None  # set by cache-mark: {"key": [names read]}
    loc: Loc | None = field(default=None, compare=False, repr=False)
    field_locs: FrozenDict[str, Loc] = field(default=EMPTY, compare=False, repr=False)

    def field_loc(self, name: str) -> Loc | None:
        """Where field `name` was written, falling back to the node itself."""
        found = self.field_locs.get(name)
        if found is not None:
            return found
        if isinstance(self.loc, JsonLoc):
            return self.loc.child(name)
        return self.loc


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class HttpNode(Node):
    """An HTTP request. `url`, header values and `body` are templates.

    A batch (method `BATCH`, made by coalesce-http) sends `requests`, each a
    `{method, url, headers?, body?}` on the node's origin `url`, concurrently, and outputs the
    list of their responses in order. `filter` declares that the source can filter its own
    items: `{"param": query parameter, "items": path of the item list in the output}`.
    """

    KIND: ClassVar[NodeKind] = NodeKind.HTTP
    method: str
    url: str
    headers: FrozenDict[str, str] = EMPTY
    body: Any = None
    batchable: bool = False
    auth: str | None = None  # the name of a secret, never the secret itself
    requests: tuple[FrozenDict[str, Any], ...] | None = None
    filter: FrozenDict[str, str] | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionNode(Node):
    """A Python callable by reference, `"module:function"`, sync or async."""

    KIND: ClassVar[NodeKind] = NodeKind.FUNCTION
    fn: str
    args: FrozenDict[str, Any] | None = None  # templates; None passes predecessor outputs


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class MapNode(Node):
    """Runs `body` once per element of the list `over`, at most `concurrency` at a time."""

    KIND: ClassVar[NodeKind] = NodeKind.MAP
    over: str  # expression
    body: Node
    concurrency: int = 8


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class JoinNode(Node):
    """Waits for all, any, or `n` of its incoming branches."""

    KIND: ClassVar[NodeKind] = NodeKind.JOIN
    mode: JoinMode = JoinMode.ALL
    n: int | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionNode(Node):
    """Evaluates `expr`; outgoing edges whose label matches the value are taken."""

    KIND: ClassVar[NodeKind] = NodeKind.CONDITION
    expr: str


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class CompositeNode(Node):
    """Runs a sub-workflow; its inputs come from `args`, its outputs are the node's output."""

    KIND: ClassVar[NodeKind] = NodeKind.COMPOSITE
    workflow: Workflow
    args: FrozenDict[str, Any] | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class AgentNode(Node):
    """An LLM call with structured output; with `may_patch` its answer may patch the graph."""

    KIND: ClassVar[NodeKind] = NodeKind.AGENT
    model: str
    prompt: str  # template
    provider: str = "openai"
    system: str | None = None
    tools: tuple[str, ...] = ()
    output_schema: FrozenDict[str, Any] | None = None
    may_patch: bool = False
    spawn_budget: int = 0  # agent nodes this agent's patches may add, per run
    max_tokens: int | None = None
    temperature: float | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalNode(Node):
    """A human decision. Each level waits `timeout_ms`, then escalates; then `on_timeout`."""

    KIND: ClassVar[NodeKind] = NodeKind.APPROVAL
    approvers: tuple[str, ...]
    escalate: tuple[str, ...] = ()
    on_timeout: OnTimeout = OnTimeout.REJECT
    message: str | None = None  # template shown to approvers


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class TimerNode(Node):
    """A durable sleep for `duration_ms`, or a wait until the time `until` (a template)."""

    KIND: ClassVar[NodeKind] = NodeKind.TIMER
    duration_ms: int | None = None
    until: str | None = None


NODE_CLASSES: Final[dict[NodeKind, type[Node]]] = {
    NodeKind.HTTP: HttpNode,
    NodeKind.FUNCTION: FunctionNode,
    NodeKind.MAP: MapNode,
    NodeKind.JOIN: JoinNode,
    NodeKind.CONDITION: ConditionNode,
    NodeKind.COMPOSITE: CompositeNode,
    NodeKind.AGENT: AgentNode,
    NodeKind.APPROVAL: ApprovalNode,
    NodeKind.TIMER: TimerNode,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    """Control (and usually data) flow from `src` to `dst`.

    `label` selects a branch of a condition or approval; `when` is a guard expression. An
    edge whose label does not match, or whose guard is false, is not taken.
    """

    src: str
    dst: str
    label: str | None = None
    when: str | None = None
    loc: Loc | None = field(default=None, compare=False, repr=False)
    field_locs: FrozenDict[str, Loc] = field(default=EMPTY, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.src, self.dst, self.label)

    def field_loc(self, name: str) -> Loc | None:
        """Where `from`, `to`, `label` or `when` was written, falling back to the edge."""
        found = self.field_locs.get(name)
        if found is not None:
            return found
        if isinstance(self.loc, JsonLoc):
            return self.loc.child(name)
        return self.loc


@dataclass(frozen=True, slots=True, kw_only=True)
class InputDecl:
    name: str
    type: ValueType = ValueType.ANY
    default: Any = None
    required: bool = True
    loc: Loc | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputDecl:
    name: str
    expr: str
    loc: Loc | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Workflow:
    """A whole workflow: what the frontends produce and what passes transform."""

    name: str
    nodes: tuple[Node, ...] = ()
    edges: tuple[Edge, ...] = ()
    inputs: tuple[InputDecl, ...] = ()
    outputs: tuple[OutputDecl, ...] = ()
    namespace: str = "default"
    description: str | None = None
    loc: Loc | None = field(default=None, compare=False, repr=False)

    def node(self, node_id: str) -> Node | None:
        """The node with `node_id`, or None. Linear; use `walk.index` in loops."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        return None
