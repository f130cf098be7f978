"""Schemathesis against a served `/openapi.json` (`check_api`): generated requests for every
operation, no 500s, and every response conforming to the spec (status, content type, body
schema). Requests generated to violate the spec (negative mode) must be refused with a 4xx.

Bounded and deterministic: derandomized, a fixed number of examples per operation and mode.
Used against the embedded backend (test_schemathesis.py) and the distributed one
(tests/integration/test_api_distributed.py).
"""

from __future__ import annotations

import schemathesis
from apiserver import GATE, Server, deploy, start_run, wait_for
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = 12
CHECKS = {
    GenerationMode.POSITIVE: [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ],
    GenerationMode.NEGATIVE: [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        negative_data_rejection,
    ],
}


def check_api(server: Server, mode: GenerationMode, gate: str = GATE) -> None:
    """Every documented operation, `EXAMPLES` generated requests each, in `mode`, against a
    server holding one run waiting on an approval (something to list, show and decide)."""
    with server.client() as c:
        deploy(c, gate, "gate")
        wait_for(c, start_run(c, "gate")["id"], "waiting")
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {server.tokens['admin']}"}
    tested = set()
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=server.url, headers=headers, checks=CHECKS[mode], timeout=30
            )

        try:
            check()
        except Unsatisfiable:
            # Negative mode: nothing in this operation can be sent against its schema (no
            # body, only free-form string parameters). Checked below that it has no body.
            assert mode is GenerationMode.NEGATIVE
            assert "requestBody" not in operation.definition.raw, operation.path
            continue
        tested.add((operation.method.lower(), operation.path))
    paths = schema.raw_schema["paths"]
    documented = {(m, p) for p, ops in paths.items() for m in ops}
    if mode is GenerationMode.POSITIVE:
        # Schemathesis leaves out the document it reads its operations from; it fetched it.
        assert tested == documented - {("get", "/openapi.json")}
    else:
        with_body = {
            (m, p) for p, ops in paths.items() for m, op in ops.items() if "requestBody" in op
        }
        assert with_body <= tested
        assert len(tested) >= len(with_body) + 5  # and the operations with bounded parameters
