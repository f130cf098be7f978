"""The structured answer every provider asks for, checks and splits: the one place it is defined.

Without `may_patch` the answer is the node's output itself, matching `output_schema` (any JSON
object when there is none). With `may_patch` it is

    {"output": <output_schema>, "patch": null | {"operations": [<RFC 6902 op>...], "reason": str}}

Both model APIs want an object at the top of the schema (a tool's `input_schema`, a JSON-schema
response format), so an output schema that is not plainly an object is wrapped as
`{"output": <output_schema>}` and unwrapped again by `AnswerChecker.split`.
"""

from __future__ import annotations

import json
from typing import Any, Final

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from aobc.ir import thaw
from aobc.runtime.providers.base import AgentRequest, ProviderError

# An RFC 6901 JSON Pointer: "" (the whole document) or "/"-separated, "~" escaped as ~0 / ~1.
_POINTER: Final = {"type": "string", "pattern": "^(/([^~/]|~[01])*)*$"}

PATCH_OPERATION_SCHEMA: Final[dict[str, Any]] = {
    "description": "One RFC 6902 JSON Patch operation.",
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "op": {"enum": ["add", "replace", "test"]},
                "path": _POINTER,
                "value": {},
            },
            "required": ["op", "path", "value"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"op": {"const": "remove"}, "path": _POINTER},
            "required": ["op", "path"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"op": {"enum": ["move", "copy"]}, "from": _POINTER, "path": _POINTER},
            "required": ["op", "from", "path"],
            "additionalProperties": False,
        },
    ],
}

PATCH_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "A change to the running workflow document, as an RFC 6902 JSON Patch.",
    "properties": {
        "operations": {"type": "array", "items": PATCH_OPERATION_SCHEMA, "minItems": 1},
        "reason": {"type": "string", "minLength": 1, "description": "Why the workflow changes."},
    },
    "required": ["operations", "reason"],
    "additionalProperties": False,
}

ANY_OBJECT: Final[dict[str, Any]] = {"type": "object"}

REPAIR_PREFIX: Final = "your answer did not match the schema: "

PATCH_INSTRUCTIONS: Final = (
    "You may change the running workflow. Its current document is below. To change it, answer "
    'with "patch": {"operations": [...RFC 6902 JSON Patch operations on this document...], '
    '"reason": "why"}; otherwise answer with "patch": null. Put your result in "output".'
)


def _output_schema(req: AgentRequest) -> dict[str, Any]:
    if req.output_schema is None:
        return dict(ANY_OBJECT)
    schema: dict[str, Any] = thaw(req.output_schema)  # plain dicts: jsonschema and JSON want them
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        raise ProviderError(
            "config", f"node {req.node_id!r} has an invalid output_schema: {e.message}"
        ) from e
    return schema


def _is_wrapped(req: AgentRequest, output: dict[str, Any]) -> bool:
    return not req.may_patch and output.get("type") != "object"


def _embed(output: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """`output` as a subschema of `root`; its `$defs` move to the root so `#/$defs/...` refs
    still resolve, and its `$schema` goes, being legal only at a root."""
    inner = dict(output)
    inner.pop("$schema", None)
    for key in ("$defs", "definitions"):
        if key in inner:
            root[key] = inner.pop(key)
    return inner


def answer_schema(req: AgentRequest) -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) the model's structured answer must match."""
    output = _output_schema(req)
    if req.may_patch:
        root: dict[str, Any] = {"type": "object"}
        root["properties"] = {
            "output": _embed(output, root),
            "patch": {"anyOf": [{"type": "null"}, PATCH_SCHEMA]},
        }
        root["required"] = ["output", "patch"]
        root["additionalProperties"] = False
        return root
    if _is_wrapped(req, output):
        root = {"type": "object"}
        root["properties"] = {"output": _embed(output, root)}
        root["required"] = ["output"]
        root["additionalProperties"] = False
        return root
    return output


class AnswerChecker:
    """Validates answers for one request against its answer schema."""

    def __init__(self, req: AgentRequest) -> None:
        self.req = req
        self.schema = answer_schema(req)
        self.wrapped = _is_wrapped(req, _output_schema(req))
        self._validator = Draft202012Validator(self.schema)

    def problem(self, answer: Any) -> str | None:
        """Why `answer` does not match the schema (short, for the model to read), or None."""
        error = best_match(self._validator.iter_errors(answer))
        if error is None:
            return None
        message = error.message if len(error.message) <= 300 else error.message[:300] + "..."
        return f"{message} (at {error.json_path})"

    def split(self, answer: Any) -> tuple[Any, dict[str, Any] | None]:
        """A valid answer's (output, patch)."""
        if self.req.may_patch:
            return answer["output"], answer["patch"]
        if self.wrapped:
            return answer["output"], None
        return answer, None


def parse_json(text: str | None) -> tuple[Any, str | None]:
    """(value, None) for JSON text, else (None, why not); models sometimes fence their JSON."""
    if text is None:
        return None, "the answer was empty"
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        return json.loads(body), None
    except ValueError as e:
        return None, f"the answer is not valid JSON ({e})"


def user_prompt(req: AgentRequest) -> str:
    """The user message: the rendered prompt, plus the workflow document for a patching node."""
    if not req.may_patch:
        return req.prompt
    document = json.dumps(req.workflow, ensure_ascii=False, sort_keys=True)
    return f"{req.prompt}\n\n{PATCH_INSTRUCTIONS}\n\nWorkflow document:\n{document}"
