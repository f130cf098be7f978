"""RFC 6902 JSON Patch: parsing, error codes, atomicity, copy-on-write and diff."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from aobc.diagnostics import Severity
from aobc.errors import PatchError
from aobc.frontend.jsonpatch import (
    MISSING,
    PatchOp,
    apply_ops,
    apply_patch,
    diff,
    json_equal,
    json_type_name,
    parse_ops,
)
from aobc.source import JsonLoc

LOC = JsonLoc("p.json", "/patch")


def _codes(exc: pytest.ExceptionInfo[PatchError]) -> list[str]:
    return exc.value.codes


def _workflow(n: int = 3) -> dict[str, Any]:
    return {
        "name": "wf",
        "nodes": [{"id": f"n{i}", "type": "task", "cfg": {"k": i}} for i in range(n)],
        "edges": [["n0", "n1"]],
    }


def _strict(a: Any, b: Any) -> bool:
    """Equal with Python types (so 1 != 1.0 != True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strict(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_strict, a, b))
    return bool(a == b)


# --- PatchOp and parse_ops ------------------------------------------------------------


def test_patch_op_to_json() -> None:
    assert PatchOp("remove", "/a").to_json() == {"op": "remove", "path": "/a"}
    assert PatchOp("add", "/a", None).to_json() == {"op": "add", "path": "/a", "value": None}
    assert PatchOp("move", "/b", from_="/a").to_json() == {"op": "move", "path": "/b", "from": "/a"}


def test_missing_is_a_singleton_across_copies() -> None:
    assert copy.deepcopy(MISSING) is MISSING
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING
    assert repr(MISSING) == "MISSING"
    assert MISSING is not None


def test_parse_ops_round_trips_and_ignores_extra_members() -> None:
    raw = [
        {"op": "add", "path": "/a", "value": None, "comment": "ignored"},
        {"op": "remove", "path": "/b", "value": "ignored"},
        {"op": "copy", "from": "/a", "path": "/c"},
        {"op": "test", "path": "", "value": {"x": [1]}},
    ]
    ops = parse_ops(raw, LOC)
    assert ops == (
        PatchOp("add", "/a", None),
        PatchOp("remove", "/b"),
        PatchOp("copy", "/c", from_="/a"),
        PatchOp("test", "", {"x": [1]}),
    )
    assert [op.to_json() for op in ops] == [
        {"op": "add", "path": "/a", "value": None},
        {"op": "remove", "path": "/b"},
        {"op": "copy", "path": "/c", "from": "/a"},
        {"op": "test", "path": "", "value": {"x": [1]}},
    ]
    assert PatchOp.from_json(raw[2]) == ops[2]


@pytest.mark.parametrize("raw", [{}, "[]", None, 3])
def test_parse_ops_needs_a_list(raw: object) -> None:
    with pytest.raises(PatchError) as info:
        parse_ops(raw, LOC)
    (diag,) = info.value.diagnostics
    assert diag.code is not None
    assert diag.code.name == "patch-syntax"
    assert diag.loc == LOC


def test_parse_ops_reports_every_malformed_op() -> None:
    raw: list[Any] = [
        {"op": "add", "path": "/ok", "value": 1},
        "not an object",
        {"path": "/a"},
        {"op": "spam", "path": "/a"},
        {"op": 7, "path": "/a"},
        {"op": "add", "value": 1},
        {"op": "add", "path": None, "value": 1},
        {"op": "add", "path": "a", "value": 1},
        {"op": "replace", "path": "/a~2"},
        {"op": "test", "path": "/a"},
        {"op": "move", "path": "/a"},
        {"op": "copy", "path": "/a", "from": 3},
        {"op": "move", "path": "/a", "from": "x"},
        {"op": ["unhashable"], "path": "/a"},
    ]
    with pytest.raises(PatchError) as info:
        parse_ops(raw, LOC)
    got = [(d.code.name if d.code else None, str(d.loc)) for d in info.value.diagnostics]
    assert got == [
        ("patch-op-invalid", "p.json#/patch/1"),
        ("patch-op-invalid", "p.json#/patch/2"),
        ("patch-op-invalid", "p.json#/patch/3/op"),
        ("patch-op-invalid", "p.json#/patch/4/op"),
        ("patch-op-invalid", "p.json#/patch/5"),
        ("patch-op-invalid", "p.json#/patch/6/path"),
        ("patch-path-invalid", "p.json#/patch/7/path"),
        ("patch-path-invalid", "p.json#/patch/8/path"),
        ("patch-op-invalid", "p.json#/patch/8"),
        ("patch-op-invalid", "p.json#/patch/9"),
        ("patch-op-invalid", "p.json#/patch/10"),
        ("patch-op-invalid", "p.json#/patch/11/from"),
        ("patch-path-invalid", "p.json#/patch/12/from"),
        ("patch-op-invalid", "p.json#/patch/13/op"),
    ]
    for d in info.value.diagnostics:
        assert d.severity is Severity.ERROR
        assert d.message[0].islower() or d.message[0] == '"'
        assert not d.message.endswith(".")
    assert 'unknown operation "spam"' in info.value.diagnostics[2].message


def test_apply_ops_validates_ops_built_in_code() -> None:
    ops = [
        PatchOp("add", "/a"),
        PatchOp("frobnicate", "/a"),
        PatchOp("move", "/a"),
        PatchOp("remove", "nope"),
    ]
    with pytest.raises(PatchError) as info:
        apply_ops({"a": 1}, ops)
    assert [str(d.loc) for d in info.value.diagnostics] == [
        "<patch>#/0",
        "<patch>#/1/op",
        "<patch>#/2",
        "<patch>#/3/path",
    ]
    assert _codes(info) == ["patch-op-invalid"] * 3 + ["patch-path-invalid"]


# --- semantics ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "patch", "expected"),
    [
        ({"a": 1}, [{"op": "add", "path": "/a", "value": 2}], {"a": 2}),
        ([1, 2], [{"op": "add", "path": "/2", "value": 3}], [1, 2, 3]),
        ([1, 2], [{"op": "add", "path": "/-", "value": 3}], [1, 2, 3]),
        ([1, 2], [{"op": "add", "path": "/0", "value": 0}], [0, 1, 2]),
        ({"a": [1]}, [{"op": "add", "path": "/a/-", "value": [2]}], {"a": [1, [2]]}),
        ({"a": 1}, [{"op": "add", "path": "", "value": [1]}], [1]),
        ({"a": 1}, [{"op": "remove", "path": ""}], None),
        ("s", [{"op": "replace", "path": "", "value": 5}], 5),
        ({"a": None}, [{"op": "replace", "path": "/a", "value": 0}], {"a": 0}),
        ({"a": {"b": 1}}, [{"op": "move", "from": "/a/b", "path": "/c"}], {"a": {}, "c": 1}),
        ([1, 2, 3], [{"op": "move", "from": "/0", "path": "/2"}], [2, 3, 1]),
        ([1, 2, 3], [{"op": "move", "from": "/2", "path": "/-"}], [1, 2, 3]),
        ({"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a"}], {"a": {"b": 1}}),
        ({"a": {"b": 1}}, [{"op": "move", "from": "/a/b", "path": ""}], 1),
        ({"a": [1]}, [{"op": "copy", "from": "/a", "path": "/b"}], {"a": [1], "b": [1]}),
        ({"a": 1}, [{"op": "test", "path": "", "value": {"a": 1.0}}], {"a": 1}),
        ({"": {"": 1}}, [{"op": "replace", "path": "//", "value": 2}], {"": {"": 2}}),
    ],
)
def test_semantics(doc: Any, patch: list[Any], expected: Any) -> None:
    before = copy.deepcopy(doc)
    assert _strict(apply_patch(doc, patch), expected)
    assert _strict(doc, before)


@pytest.mark.parametrize(
    ("doc", "op", "code", "message"),
    [
        (
            {"a": 1},
            {"op": "remove", "path": "/b"},
            "patch-path-missing",
            '"remove" targets /b, but the object at the root has no member "b" (it has "a")',
        ),
        (
            {"a": 1},
            {"op": "add", "path": "/b/c", "value": 1},
            "patch-path-missing",
            '"add" targets /b/c, but the object at the root has no member "b" (it has "a")',
        ),
        (
            {"a": 1},
            {"op": "add", "path": "/a/c", "value": 1},
            "patch-path-missing",
            '"add" targets /a/c, but /a is a number, not an object or array',
        ),
        (
            "x",
            {"op": "add", "path": "/a", "value": 1},
            "patch-path-missing",
            '"add" targets /a, but the root is a string, not an object or array',
        ),
        (
            {},
            {"op": "replace", "path": "/a", "value": 1},
            "patch-path-missing",
            '"replace" targets /a, but the object at the root has no member "a" (it is empty)',
        ),
        (
            {"n": [1, 2, 3]},
            {"op": "remove", "path": "/n/9"},
            "patch-index",
            '"remove" targets /n/9, but the array at /n has 3 elements',
        ),
        (
            {"n": [1]},
            {"op": "replace", "path": "/n/1", "value": 0},
            "patch-index",
            '"replace" targets /n/1, but the array at /n has 1 element',
        ),
        (
            {"n": [1]},
            {"op": "add", "path": "/n/2", "value": 0},
            "patch-index",
            '"add" targets /n/2, but the array at /n has 1 element',
        ),
        (
            {"n": [1]},
            {"op": "remove", "path": "/n/-"},
            "patch-index",
            '"remove" targets /n/-, but "-" names no element (the array at /n has 1 element)',
        ),
        (
            {"n": [1]},
            {"op": "test", "path": "/n/00", "value": 1},
            "patch-index",
            '"test" targets /n/00, but "00" is not an array index (the array at /n has 1 element)',
        ),
        (
            [1],
            {"op": "add", "path": "/-1", "value": 1},
            "patch-index",
            '"add" targets /-1, but "-1" is not an array index '
            "(the array at the root has 1 element)",
        ),
        (
            [1],
            {"op": "add", "path": "/a", "value": 1},
            "patch-index",
            '"add" targets /a, but "a" is not an array index (the array at the root has 1 element)',
        ),
        (
            {"a": 1},
            {"op": "test", "path": "/a", "value": True},
            "patch-test-failed",
            '"test" at /a expected boolean true, found number 1',
        ),
        (
            {"a": {"b": 1}},
            {"op": "move", "from": "/a", "path": "/a/b/c"},
            "patch-move-into-child",
            '"move" from /a to /a/b/c would move a value into its own child',
        ),
        (
            {"a": 1},
            {"op": "move", "from": "", "path": "/b"},
            "patch-move-into-child",
            '"move" from the root to /b would move a value into its own child',
        ),
        (
            {"a": 1},
            {"op": "move", "from": "/x", "path": "/x"},
            "patch-path-missing",
            '"move" reads /x, but the object at the root has no member "x" (it has "a")',
        ),
        (
            {"a": [1]},
            {"op": "copy", "from": "/a/1", "path": "/b"},
            "patch-index",
            '"copy" reads /a/1, but the array at /a has 1 element',
        ),
    ],
)
def test_error_codes(doc: Any, op: dict[str, Any], code: str, message: str) -> None:
    with pytest.raises(PatchError) as info:
        apply_patch(doc, [{"op": "test", "path": "", "value": doc}, op], LOC)
    (diag,) = info.value.diagnostics
    assert diag.code is not None
    assert diag.code.name == code
    assert diag.message == message
    assert str(diag.loc) == "p.json#/patch/1"
    (note,) = diag.notes
    assert note.message.startswith("while applying operation 1 (")


def test_error_reports_array_size_and_note() -> None:
    doc = _workflow(3)
    ops = [
        PatchOp("replace", "/name", "x"),
        PatchOp("add", "/nodes/-", {"id": "n3"}),
        PatchOp("remove", "/nodes/9"),
    ]
    with pytest.raises(PatchError) as info:
        apply_ops(doc, ops)
    (diag,) = info.value.diagnostics
    assert diag.message == '"remove" targets /nodes/9, but the array at /nodes has 4 elements'
    assert str(diag.loc) == "<patch>#/2"
    assert [n.message for n in diag.notes] == ['while applying operation 2 ("remove /nodes/9")']
    assert diag.to_json()["pointer"] == "/2"


def test_many_members_are_summarised() -> None:
    doc = {f"k{i}": i for i in range(8)}
    with pytest.raises(PatchError, match=r'"k4" and 3 more\)$'):
        apply_ops(doc, [PatchOp("remove", "/zz")])


# --- atomicity and copy-on-write ------------------------------------------------------


def test_failing_op_changes_nothing() -> None:
    doc = _workflow(3)
    before = copy.deepcopy(doc)
    ops = [
        PatchOp("replace", "/nodes/0/cfg/k", 99),
        PatchOp("remove", "/edges/0"),
        PatchOp("add", "/nodes/1/cfg/new", [1]),
        PatchOp("remove", "/nodes/7"),
    ]
    with pytest.raises(PatchError) as info:
        apply_ops(doc, ops, LOC)
    assert str(info.value.diagnostics[0].loc) == "p.json#/patch/3"
    assert _strict(doc, before)


def test_untouched_subtrees_are_shared_by_identity() -> None:
    doc = _workflow(1000)
    new = apply_ops(doc, [PatchOp("replace", "/nodes/500/cfg/k", "x")])
    assert new is not doc
    assert new["nodes"] is not doc["nodes"]
    assert new["edges"] is doc["edges"]
    for k in (0, 499, 501, 999):
        assert new["nodes"][k] is doc["nodes"][k]
    assert new["nodes"][500] is not doc["nodes"][500]
    assert new["nodes"][500]["cfg"] == {"k": "x"}
    assert doc["nodes"][500]["cfg"] == {"k": 500}
    changed = [k for k in range(1000) if new["nodes"][k] is not doc["nodes"][k]]
    assert changed == [500]


def test_empty_patch_returns_the_input() -> None:
    doc = _workflow()
    assert apply_ops(doc, []) is doc
    assert apply_ops(doc, [PatchOp("test", "/name", "wf")]) is doc


def test_several_ops_in_one_container() -> None:
    doc = {"l": [0, 1, 2], "o": {"x": 1}}
    ops = [
        PatchOp("add", "/l/0", "a"),
        PatchOp("remove", "/l/1"),
        PatchOp("add", "/l/-", "z"),
        PatchOp("replace", "/o/x", 2),
        PatchOp("add", "/o/y", 3),
    ]
    assert apply_ops(doc, ops) == {"l": ["a", 1, 2, "z"], "o": {"x": 2, "y": 3}}
    assert doc == {"l": [0, 1, 2], "o": {"x": 1}}


def test_op_values_are_never_mutated() -> None:
    value = {"inner": {"a": 1}}
    ops = [
        PatchOp("add", "/v", value),
        PatchOp("add", "/w", value),
        PatchOp("add", "/v/inner/b", 2),
    ]
    new = apply_ops({}, ops)
    assert new == {"v": {"inner": {"a": 1, "b": 2}}, "w": {"inner": {"a": 1}}}
    assert value == {"inner": {"a": 1}}
    # Applying the same ops again sees the pristine values.
    assert apply_ops({}, ops) == new


def test_copy_then_change_destination_or_source() -> None:
    doc = {"a": {"b": {"c": 1}}}
    new = apply_ops(
        doc,
        [
            PatchOp("add", "/a/b/d", 2),  # makes /a/b an owned copy
            PatchOp("copy", "/x", from_="/a/b"),
            PatchOp("add", "/x/e", 3),
            PatchOp("add", "/a/b/f", 4),
        ],
    )
    assert new == {"a": {"b": {"c": 1, "d": 2, "f": 4}}, "x": {"c": 1, "d": 2, "e": 3}}
    assert doc == {"a": {"b": {"c": 1}}}


def test_copy_of_nested_owned_containers() -> None:
    doc = {"a": {"b": {"c": [1]}}}
    new = apply_ops(
        doc,
        [
            PatchOp("add", "/a/b/c/-", 2),
            PatchOp("copy", "/x", from_="/a"),
            PatchOp("add", "/x/b/c/-", 3),
            PatchOp("add", "/a/b/c/-", 4),
        ],
    )
    assert new == {"a": {"b": {"c": [1, 2, 4]}}, "x": {"b": {"c": [1, 2, 3]}}}
    assert doc == {"a": {"b": {"c": [1]}}}


def test_move_keeps_one_owner() -> None:
    doc = {"a": {"b": [1]}, "z": {}}
    new = apply_ops(
        doc,
        [
            PatchOp("add", "/a/b/-", 2),
            PatchOp("move", "/z/m", from_="/a/b"),
            PatchOp("add", "/z/m/-", 3),
            PatchOp("add", "/a/b", []),
        ],
    )
    assert new == {"a": {"b": []}, "z": {"m": [1, 2, 3]}}
    assert doc == {"a": {"b": [1]}, "z": {}}


def test_copy_of_unowned_value_is_shared_until_written() -> None:
    doc = {"a": {"k": [1, 2]}}
    new = apply_ops(doc, [PatchOp("copy", "/b", from_="/a")])
    assert new["b"] is doc["a"]
    newer = apply_ops(new, [PatchOp("add", "/b/k/-", 3)])
    assert newer == {"a": {"k": [1, 2]}, "b": {"k": [1, 2, 3]}}
    assert newer["a"] is doc["a"]


# --- json_equal / json_type_name ------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1.0, True),
        (True, 1, False),
        (False, 0, False),
        (True, True, True),
        (None, None, True),
        (None, False, False),
        ("1", 1, False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        ({"a": 1}, {"a": 1, "b": None}, False),
        ([1, 2], [2, 1], False),
        ([1, [True]], [1.0, [True]], True),
        ([1, [True]], [1, [1]], False),
        ({}, [], False),
        (0.0, -0.0, True),
    ],
)
def test_json_equal(a: Any, b: Any, equal: bool) -> None:
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ({}, "object"),
        ([], "array"),
        ("", "string"),
        (1, "number"),
        (1.5, "number"),
        (True, "boolean"),
        (None, "null"),
    ],
)
def test_json_type_name(value: Any, name: str) -> None:
    assert json_type_name(value) == name


# --- diff -----------------------------------------------------------------------------


def _check_diff(a: Any, b: Any) -> list[PatchOp]:
    before = copy.deepcopy(a)
    ops = diff(a, b)
    assert _strict(apply_ops(a, ops), b)
    assert _strict(a, before)
    assert diff(a, b) == ops  # deterministic
    return ops


def test_diff_equal_is_empty() -> None:
    assert _check_diff(_workflow(), _workflow()) == []


@pytest.mark.parametrize(
    ("a", "b"),
    [(1, 1.0), (1, True), (0, False), (1.0, 1), (0.0, -0.0), ([1], [1.0]), ({"a": 1}, {"a": True})],
)
def test_diff_tells_python_types_apart(a: Any, b: Any) -> None:
    assert len(_check_diff(a, b)) == 1


def test_diff_nested_objects() -> None:
    a = {"a": {"b": 1, "c": 2}, "d": 1, "gone": 0}
    b = {"a": {"b": 1, "c": 3, "n": None}, "d": [1], "new": {}}
    ops = _check_diff(a, b)
    assert [op.to_json() for op in ops] == [
        {"op": "remove", "path": "/gone"},
        {"op": "replace", "path": "/a/c", "value": 3},
        {"op": "add", "path": "/a/n", "value": None},
        {"op": "replace", "path": "/d", "value": [1]},
        {"op": "add", "path": "/new", "value": {}},
    ]


def test_diff_root_type_change() -> None:
    assert _check_diff({"a": 1}, [1]) == [PatchOp("replace", "", [1])]
    assert _check_diff(None, {}) == [PatchOp("replace", "", {})]


def test_diff_one_field_in_a_big_node_list() -> None:
    a = _workflow(1000)
    b = copy.deepcopy(a)
    b["nodes"][500]["type"] = "agent"
    assert _check_diff(a, b) == [PatchOp("replace", "/nodes/500/type", "agent")]


def test_diff_id_aligned_list() -> None:
    a = {"nodes": [{"id": x, "v": 0} for x in "abcde"]}
    b = {
        "nodes": [
            {"id": "d", "v": 0},
            {"id": "a", "v": 1},
            {"id": "x", "v": 0},
            {"id": "c", "v": 0},
        ]
    }
    ops = _check_diff(a, b)
    assert [op.to_json() for op in ops] == [
        {"op": "remove", "path": "/nodes/4"},
        {"op": "remove", "path": "/nodes/1"},
        {"op": "move", "path": "/nodes/0", "from": "/nodes/2"},
        {"op": "replace", "path": "/nodes/1/v", "value": 1},
        {"op": "add", "path": "/nodes/2", "value": {"id": "x", "v": 0}},
    ]


def test_diff_id_list_insert_in_middle_is_one_add() -> None:
    a = _workflow(50)
    b = copy.deepcopy(a)
    b["nodes"].insert(10, {"id": "new", "type": "task"})
    assert _check_diff(a, b) == [PatchOp("add", "/nodes/10", {"id": "new", "type": "task"})]


def test_diff_lists_without_unique_ids_use_prefix_and_suffix() -> None:
    dup = [{"id": "a", "v": 1}, {"id": "a", "v": 2}]
    _check_diff({"l": dup}, {"l": [{"id": "a", "v": 2}]})
    _check_diff([{"id": 1}], [{"id": 2}])
    ops = _check_diff([1, 2, 3, 4, 5], [1, 2, 9, 4, 5])
    assert ops == [PatchOp("replace", "/2", 9)]
    ops = _check_diff([1, 2, 3, 4, 5], [1, 5])
    assert [op.to_json() for op in ops] == [
        {"op": "remove", "path": "/3"},
        {"op": "remove", "path": "/2"},
        {"op": "remove", "path": "/1"},
    ]
    ops = _check_diff([1, 5], [1, 2, 3, 5])
    assert [op.to_json() for op in ops] == [
        {"op": "add", "path": "/1", "value": 2},
        {"op": "add", "path": "/2", "value": 3},
    ]
    _check_diff([[1, 2], {"a": 1}], [[1, 3], {"a": 2}, 7])


def test_diff_ops_survive_json_round_trip() -> None:
    a = _workflow(5)
    b = copy.deepcopy(a)
    b["nodes"].reverse()
    b["nodes"][2]["cfg"] = None
    ops = diff(a, b)
    wire = [op.to_json() for op in ops]
    assert _strict(apply_patch(a, copy.deepcopy(wire)), b)


def test_from_json_reports_at_the_given_location() -> None:
    at = JsonLoc("p.json", "/ops/4")
    assert PatchOp.from_json({"op": "remove", "path": "/a"}, at) == PatchOp("remove", "/a")
    with pytest.raises(PatchError) as info:
        PatchOp.from_json({"op": "add", "path": "/a"}, at)
    assert [str(d.loc) for d in info.value.diagnostics] == ["p.json#/ops/4"]
    with pytest.raises(PatchError) as info:
        PatchOp.from_json([], at)
    assert info.value.codes == ["patch-op-invalid"]
