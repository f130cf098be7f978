"""The public RFC 6902 test suite (json-patch/json-patch-tests), one test per record.

The suite marks four records "disabled" (behaviour implementations disagree on). None is
skipped here: a scalar document and a whole-document `test` are run like any record (aobc
supports both), and the two records whose operation has two "op" members are checked on
their raw text, since a JSON parser that keeps the last member hides the problem: aobc's
patch reader refuses duplicate members, so both must fail with a coded diagnostic.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from aobc.errors import PatchError
from aobc.frontend.jsonpatch import apply_patch, json_equal
from aobc.frontend.patchfile import parse_patch_text
from aobc.source import JsonLoc, SourceFile

SUITE_FILES = ("tests.json", "spec_tests.json")


def _suite_dir() -> Path:
    shared = os.environ.get("AOBC_SHARED_DIR")
    root = Path(shared) if shared else Path(__file__).resolve().parents[3] / "shared"
    return root / "conformance" / "json-patch-tests"


class _Members(list[tuple[str, Any]]):
    """A JSON object as its members in order, duplicates kept."""


def _dump(value: Any) -> str:
    """JSON text for a value read with `_Members`, duplicate members written out again."""
    if isinstance(value, _Members):
        return "{" + ", ".join(f"{json.dumps(k)}: {_dump(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dump(v) for v in value) + "]"
    return json.dumps(value)


def _has_duplicates(value: Any) -> bool:
    if isinstance(value, _Members):
        keys = [k for k, _ in value]
        return len(keys) != len(set(keys)) or any(_has_duplicates(v) for _, v in value)
    return isinstance(value, list) and any(_has_duplicates(v) for v in value)


def _load() -> list[Any]:
    """One param per record; a missing file becomes a param that fails, never a skip. A
    record whose patch has duplicate members also carries the patch's raw text."""
    params: list[Any] = []
    for name in SUITE_FILES:
        path = _suite_dir() / name
        try:
            text = path.read_text(encoding="utf-8")
            records = json.loads(text)
            raw = json.loads(text, object_pairs_hook=_Members)
        except (OSError, ValueError) as exc:
            params.append(pytest.param(name, None, f"{exc}", id=f"{name}:unreadable"))
            continue
        for i, (record, members) in enumerate(zip(records, raw, strict=True)):
            patch = dict(members)["patch"]
            if _has_duplicates(patch):
                record = {**record, "raw_patch": _dump(patch)}
            comment = str(record.get("comment", "")).strip() or "no comment"
            params.append(pytest.param(name, record, None, id=f"{name}:{i}:{comment}"))
    return params


def _strict(v: Any) -> str:
    # Serialised form keeps key order and number spelling, so equal text means identical.
    return json.dumps(v)


@pytest.mark.parametrize(("file", "record", "load_error"), _load())
def test_record(file: str, record: dict[str, Any] | None, load_error: str | None) -> None:
    if record is None:
        pytest.fail(
            f"JSON Patch conformance file {file!r} is missing or unreadable in "
            f"{_suite_dir()} (set AOBC_SHARED_DIR to the 'shared' directory): {load_error}"
        )
    if "raw_patch" in record:
        assert "error" in record
        with pytest.raises(PatchError) as refused:
            parse_patch_text(SourceFile.of(file, record["raw_patch"]))
        (diag,) = refused.value.diagnostics
        assert diag.code.name == "json-syntax" and 'key "op" appears twice' in diag.message
        return
    doc, patch = record["doc"], record["patch"]
    doc_before, patch_before = copy.deepcopy(doc), copy.deepcopy(patch)
    loc = JsonLoc(file, "/patch")

    if "error" in record:
        with pytest.raises(PatchError) as info:
            apply_patch(doc, patch, loc)
        assert info.value.diagnostics, "a PatchError must carry diagnostics"
        for diag in info.value.diagnostics:
            assert diag.code is not None, f"diagnostic without a code: {diag}"
            assert diag.is_error
    else:
        result = apply_patch(doc, patch, loc)
        again = apply_patch(doc, patch, loc)
        assert _strict(result) == _strict(again), "applying the same patch twice differs"
        if "expected" in record:
            assert json_equal(result, record["expected"]), (
                f"got {result!r}, expected {record['expected']!r}"
            )

    assert _strict(doc) == _strict(doc_before), "the input document was mutated"
    assert _strict(patch) == _strict(patch_before), "the patch was mutated"
