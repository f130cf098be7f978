"""The registry of diagnostic codes.

Every diagnostic aobc emits carries one of these kebab-case codes (mypy's error codes are the
model). Codes are stable: tools and tests match on them, never on message text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_REGISTRY: dict[str, ErrorCode] = {}


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """A stable identifier for a kind of diagnostic."""

    name: str
    description: str
    category: str

    def __post_init__(self) -> None:
        if self.name in _REGISTRY:
            raise ValueError(f"duplicate error code {self.name!r}")
        _REGISTRY[self.name] = self

    def __str__(self) -> str:
        return self.name


def all_codes() -> dict[str, ErrorCode]:
    """Every registered code, by name."""
    return dict(_REGISTRY)


def _c(name: str, description: str, category: str) -> ErrorCode:
    return ErrorCode(name, description, category)


# --- input ---------------------------------------------------------------------------
IO_ERROR: Final = _c("io-error", "a file could not be read or written", "input")
ENCODING: Final = _c("encoding", "a file is not valid UTF-8", "input")
SYNTAX: Final = _c("syntax", "the DSL text does not parse", "input")
JSON_SYNTAX: Final = _c("json-syntax", "the JSON text does not parse", "input")
SIZE_LIMIT: Final = _c("size-limit", "an input exceeds a configured size limit", "input")
POLICY: Final = _c("policy", "the policy file is invalid", "input")
USAGE: Final = _c("usage", "the command line is invalid", "input")

# --- schema --------------------------------------------------------------------------
MISSING_FIELD: Final = _c("missing-field", "a required field is absent", "schema")
UNKNOWN_FIELD: Final = _c("unknown-field", "a field is not part of the schema", "schema")
WRONG_TYPE: Final = _c("wrong-type", "a field has the wrong JSON type", "schema")
INVALID_VALUE: Final = _c("invalid-value", "a field's value is out of its domain", "schema")
UNKNOWN_NODE_TYPE: Final = _c("unknown-node-type", "a node's type is not a node kind", "schema")
INVALID_ID: Final = _c("invalid-id", "an id is not an identifier", "schema")
EXPR_SYNTAX: Final = _c("expr-syntax", "an expression does not parse", "schema")
UNKNOWN_FUNCTION: Final = _c(
    "unknown-function", "an expression calls a function that does not exist", "schema"
)

# --- graph ---------------------------------------------------------------------------
DUPLICATE_ID: Final = _c("duplicate-id", "two nodes share an id", "graph")
DUPLICATE_EDGE: Final = _c("duplicate-edge", "the same edge is declared twice", "graph")
UNDEFINED_NODE: Final = _c("undefined-node", "an edge names a node that does not exist", "graph")
UNDEFINED_REFERENCE: Final = _c(
    "undefined-reference", "an expression names an unknown node or input", "graph"
)
NOT_UPSTREAM: Final = _c(
    "not-upstream", "an expression reads a node that does not run before it", "graph"
)
EFFECT_MISMATCH: Final = _c(
    "effect-mismatch", "a node declares a weaker effect than what it runs", "graph"
)
CYCLE: Final = _c("cycle", "the graph has a cycle", "graph")
UNREACHABLE: Final = _c("unreachable", "a node can never run", "graph")
INVALID_LABEL: Final = _c("invalid-label", "an edge label its source can never produce", "graph")
JOIN_ARITY: Final = _c("join-arity", "a join's arity does not match its inputs", "graph")
SPAWN_BUDGET: Final = _c("spawn-budget", "agent nodes exceed a spawn budget", "graph")
AGENT_DEPTH: Final = _c("agent-depth", "agents are nested too deeply", "graph")
SSRF: Final = _c("ssrf", "an HTTP URL targets a forbidden address or scheme", "security")
SSRF_DYNAMIC: Final = _c(
    "ssrf-dynamic", "an HTTP host is computed at run time and checked only then", "security"
)
INLINE_SECRET: Final = _c("inline-secret", "a credential is written inline", "security")

# --- patches -------------------------------------------------------------------------
PATCH_SYNTAX: Final = _c("patch-syntax", "a patch document is malformed", "patch")
PATCH_OP_INVALID: Final = _c("patch-op-invalid", "a patch operation is malformed", "patch")
PATCH_PATH_INVALID: Final = _c("patch-path-invalid", "a JSON pointer is malformed", "patch")
PATCH_PATH_MISSING: Final = _c("patch-path-missing", "a JSON pointer names nothing", "patch")
PATCH_INDEX: Final = _c("patch-index", "an array index is out of range or malformed", "patch")
PATCH_TEST_FAILED: Final = _c("patch-test-failed", 'a "test" operation did not match', "patch")
PATCH_MOVE_INTO_CHILD: Final = _c(
    "patch-move-into-child", "a value cannot be moved into its own child", "patch"
)
PATCH_ID_MISMATCH: Final = _c("patch-id-mismatch", "a patch's id is not its content hash", "patch")
PATCH_CONFLICT: Final = _c(
    "patch-conflict", "a patch no longer applies cleanly to the current version", "patch"
)
PATCH_BASE_UNKNOWN: Final = _c(
    "patch-base-unknown", "a patch names a base version that is not known", "patch"
)
PATCH_TOUCHES_EXECUTED: Final = _c(
    "patch-touches-executed", "a live patch changes a node that already ran", "patch"
)

# --- passes --------------------------------------------------------------------------
PIPELINE_SYNTAX: Final = _c("pipeline-syntax", "a pass pipeline string does not parse", "pass")
UNKNOWN_PASS: Final = _c("unknown-pass", "a pipeline names a pass that is not registered", "pass")
PASS_OPTION: Final = _c("pass-option", "a pass option is unknown or has a bad value", "pass")
DUPLICATE_PASS: Final = _c("duplicate-pass", "two passes are registered under one name", "pass")
PASS_FAILED: Final = _c("pass-failed", "a pass raised an error or broke the workflow", "pass")

# --- WebAssembly pass plugins (aobc.wasm) ----------------------------------------------
WASM_LOAD: Final = _c("wasm-load", "a pass plugin cannot be read or compiled", "plugin")
WASM_ABI: Final = _c(
    "wasm-abi", "a pass plugin does not implement the aobc-pass-v1 ABI it must", "plugin"
)
WASM_TRAP: Final = _c("wasm-trap", "a pass plugin trapped", "plugin")
WASM_FUEL: Final = _c("wasm-fuel", "a pass plugin ran out of fuel", "plugin")
WASM_TIMEOUT: Final = _c("wasm-timeout", "a pass plugin ran past its wall-time deadline", "plugin")
WASM_MEMORY: Final = _c("wasm-memory", "a pass plugin needed more memory than its cap", "plugin")
WASM_OUTPUT: Final = _c(
    "wasm-output", "a pass plugin's output is too large, not JSON or not the ABI's shape", "plugin"
)
WASM_ERROR: Final = _c("wasm-error", "a pass plugin reported an error", "plugin")
WASM_PATCH: Final = _c(
    "wasm-patch", "a pass plugin's patch was refused by the validator or the verifier", "plugin"
)
WASM_EFFECT: Final = _c(
    "wasm-effect",
    "a pass plugin's patch removes or weakens an effectful node that can run",
    "plugin",
)

# --- backend -------------------------------------------------------------------------
IR_FORMAT: Final = _c("ir-format", "a file is not an aobc IR file", "backend")
IR_VERSION: Final = _c("ir-version", "an IR file has an unsupported format version", "backend")
IR_TRUNCATED: Final = _c("ir-truncated", "an IR file is shorter than its header says", "backend")
IR_CHECKSUM: Final = _c("ir-checksum", "an IR file's content does not match its hash", "backend")
IR_CORRUPT: Final = _c("ir-corrupt", "an IR file's content is inconsistent", "backend")

# --- control plane (HTTP API, `aob`) ----------------------------------------------------
TOKENS_FILE: Final = _c("tokens-file", "the API's tokens file is invalid", "api")
UNAUTHORIZED: Final = _c("unauthorized", "no bearer token, or one the server does not know", "api")
FORBIDDEN: Final = _c("forbidden", "the token's role does not allow the request", "api")
PATCH_BUDGET: Final = _c("patch-budget", "an agent token is over its patch budget", "api")
NOT_FOUND: Final = _c("not-found", "the workflow, run, patch or ticket does not exist", "api")
CONFLICT: Final = _c("conflict", "the request conflicts with the state it acts on", "api")
BAD_REQUEST: Final = _c("bad-request", "the request body or parameters are malformed", "api")
SERVER_UNREACHABLE: Final = _c("server-unreachable", "the control plane did not answer", "api")
SERVER_ERROR: Final = _c("server-error", "the control plane failed on a request", "api")

# --- distributed stores (Postgres, Kafka, S3, Redis) -------------------------------------
STORE_CONFIG: Final = _c("store-config", "a store connection URL or setting is invalid", "store")
STORE_UNAVAILABLE: Final = _c(
    "store-unavailable", "a store did not answer within its retry budget", "store"
)
STORE_REFUSED: Final = _c("store-refused", "a store refused a request it cannot retry", "store")

INTERNAL: Final = _c("internal-error", "aobc itself failed; please report it", "internal")
