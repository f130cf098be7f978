"""Properties of the JSON Patch engine: diff round-trips, purity, determinism."""

from __future__ import annotations

import copy
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aobc.errors import PatchError
from aobc.frontend.jsonpatch import PatchOp, apply_ops, diff
from aobc.frontend.jsonpointer import format_pointer

# Keys with "/" and "~" exercise pointer escaping; a small alphabet makes a and b overlap.
KEYS = st.text(alphabet="ab/~0", max_size=3)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=3)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-3, max_value=3)
    | st.text(alphabet="xy", max_size=2)
)


def _id_lists(children: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """Lists of objects with unique string ids, like a workflow's `nodes`."""
    return st.lists(st.sampled_from("pqrstu"), unique=True, max_size=5).flatmap(
        lambda ids: st.tuples(
            *(st.dictionaries(st.sampled_from("vw"), children, max_size=2) for _ in ids)
        ).map(lambda bodies: [{**body, "id": i} for i, body in zip(ids, bodies, strict=True)])
    )


JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(KEYS, children, max_size=4)
        | _id_lists(children)
    ),
    max_leaves=20,
)
WORKFLOWS = st.fixed_dictionaries({"nodes": _id_lists(JSON), "x": JSON})
DOCS = JSON | WORKFLOWS


def strict_equal(a: Any, b: Any) -> bool:
    """Equal including Python types: 1, 1.0 and True differ, and so do 0.0 and -0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(strict_equal, a, b))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def _pointers(doc: Any, prefix: tuple[str | int, ...] = ()) -> list[str]:
    """Every location in `doc`, plus "-" and a missing member under each container."""
    out = [format_pointer(prefix)]
    if isinstance(doc, dict):
        out.append(format_pointer((*prefix, "zz")))
        for k, v in doc.items():
            out.extend(_pointers(v, (*prefix, k)))
    elif isinstance(doc, list):
        out.append(format_pointer((*prefix, "-")))
        out.append(format_pointer((*prefix, len(doc))))
        for i, v in enumerate(doc):
            out.extend(_pointers(v, (*prefix, i)))
    return out


@st.composite
def doc_and_ops(draw: st.DrawFn) -> tuple[Any, list[PatchOp]]:
    """A document and a random patch over its locations (which may well fail)."""
    doc = draw(DOCS)
    where = st.sampled_from(_pointers(doc))
    ops: list[PatchOp] = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        name = draw(st.sampled_from(["add", "remove", "replace", "move", "copy", "test"]))
        path = draw(where)
        if name in ("move", "copy"):
            ops.append(PatchOp(name, path, from_=draw(where)))
        elif name == "remove":
            ops.append(PatchOp(name, path))
        else:
            ops.append(PatchOp(name, path, draw(JSON)))
    return doc, ops


@settings(deadline=None)
@given(DOCS, DOCS)
def test_diff_round_trips_strictly(a: Any, b: Any) -> None:
    a_before, b_before = copy.deepcopy(a), copy.deepcopy(b)
    ops = diff(a, b)
    assert strict_equal(apply_ops(a, ops), b)
    assert strict_equal(a, a_before)
    assert strict_equal(b, b_before)
    assert diff(a, b) == ops


@settings(deadline=None)
@given(WORKFLOWS, st.data())
def test_diff_of_an_edited_workflow_round_trips(a: Any, data: st.DataObject) -> None:
    b = copy.deepcopy(a)
    nodes = b["nodes"]
    if nodes:
        k = data.draw(st.integers(min_value=0, max_value=len(nodes) - 1))
        nodes[k]["v"] = data.draw(JSON)
    keep = data.draw(st.lists(st.booleans(), min_size=len(nodes), max_size=len(nodes)))
    nodes = [n for n, kept in zip(nodes, keep, strict=True) if kept]
    have = {n["id"] for n in nodes}
    nodes.extend(n for n in data.draw(_id_lists(JSON)) if n["id"] not in have)
    b["nodes"] = data.draw(st.permutations(nodes))
    assert strict_equal(apply_ops(a, diff(a, b)), b)


def _outcome(doc: Any, ops: list[PatchOp]) -> tuple[Any, list[str] | None]:
    """(result, None) if the patch applies, else (None, the error codes)."""
    try:
        return apply_ops(doc, ops), None
    except PatchError as exc:
        codes = [d.code.name if d.code is not None else "<none>" for d in exc.diagnostics]
        return None, codes


@settings(deadline=None)
@given(doc_and_ops())
def test_apply_never_mutates_and_is_repeatable(case: tuple[Any, list[PatchOp]]) -> None:
    doc, ops = case
    doc_before, ops_before = copy.deepcopy(doc), copy.deepcopy(ops)
    first, first_codes = _outcome(doc, ops)
    first_before = copy.deepcopy(first)
    second, second_codes = _outcome(doc, ops)
    assert first_codes == second_codes
    assert "<none>" not in (first_codes or [])
    assert strict_equal(first, second)
    # The second run must not have disturbed the first result (they share structure).
    assert strict_equal(first, first_before)
    assert strict_equal(doc, doc_before)
    assert ops == ops_before
