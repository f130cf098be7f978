"""Deterministic answers for demos and tests: no network, no model.

A script maps node ids (or `"*"`, for any node without its own list) to the answers to give,
in order. Each answer is what a model would answer, the structured answer object: for a node
that `may_patch`, `{"output": ..., "patch": null | {...}}`. Answers are checked against the
answer schema like any model's; an invalid one fails at once (a script is not repaired).

Any object `{"$echo": "prompt"}` inside an answer is replaced by that field of the request
(`prompt`, `system`, `node_id` or `model`), so one script line can follow its input.
"""

from __future__ import annotations

import copy
import json
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from aobc.runtime.providers.answer import AnswerChecker
from aobc.runtime.providers.base import AgentAnswer, AgentRequest, ProviderError

ANY_NODE: Final = "*"
ECHO_FIELDS: Final = ("prompt", "system", "node_id", "model")


def _echo(value: Any, req: AgentRequest) -> Any:
    if isinstance(value, dict):
        if value.keys() == {"$echo"}:
            field = value["$echo"]
            if field not in ECHO_FIELDS:
                raise ProviderError(
                    "config", f"scripted: cannot echo {field!r} (one of {', '.join(ECHO_FIELDS)})"
                )
            return getattr(req, field)
        return {k: _echo(v, req) for k, v in value.items()}
    if isinstance(value, list):
        return [_echo(v, req) for v in value]
    return value


class ScriptedProvider:
    """Answers from a script, consumed in order per node id."""

    def __init__(self, script: Mapping[str, Sequence[Any]]) -> None:
        self._answers: dict[str, deque[Any]] = {}
        for node_id, answers in script.items():
            if isinstance(answers, str | bytes) or not isinstance(answers, Sequence):
                raise ProviderError(
                    "config", f"scripted: the answers for {node_id!r} are not a list"
                )
            self._answers[node_id] = deque(copy.deepcopy(list(answers)))

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedProvider:
        """A script from a JSON file: `{"node_id" | "*": [answer, ...]}`."""
        try:
            script = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ProviderError("config", f"scripted: cannot read script {str(path)!r}: {e}") from e
        if not isinstance(script, dict):
            raise ProviderError("config", f"scripted: script {str(path)!r} is not a JSON object")
        return cls(script)

    def remaining(self, node_id: str) -> int:
        """Answers left for `node_id`, counting those of "*" it would fall back to."""
        own = len(self._answers.get(node_id, ()))
        return own if node_id == ANY_NODE else own + len(self._answers.get(ANY_NODE, ()))

    async def complete(self, req: AgentRequest) -> AgentAnswer:
        checker = AnswerChecker(req)
        queue = self._answers.get(req.node_id)
        if not queue:
            queue = self._answers.get(ANY_NODE)
        if not queue:
            raise ProviderError(
                "config", f"scripted: no answer left for node {req.node_id!r} (nor for '*')"
            )
        answer = _echo(queue.popleft(), req)
        problem = checker.problem(answer)
        if problem is not None:
            raise ProviderError(
                "schema",
                f"scripted: the answer for node {req.node_id!r} does not match the schema: "
                f"{problem}",
            )
        output, patch = checker.split(answer)
        usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        return AgentAnswer(output=output, patch=patch, usage=usage, model=req.model, rounds=1)
