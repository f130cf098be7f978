"""The public RFC 6902 test suite (json-patch/json-patch-tests), one test per record."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from aobc.errors import PatchError
from aobc.frontend.jsonpatch import apply_patch, json_equal
from aobc.source import JsonLoc

SUITE_FILES = ("tests.json", "spec_tests.json")


def _suite_dir() -> Path:
    shared = os.environ.get("AOBC_SHARED_DIR")
    root = Path(shared) if shared else Path(__file__).resolve().parents[3] / "shared"
    return root / "conformance" / "json-patch-tests"


def _load() -> list[Any]:
    """One param per record; a missing file becomes a param that fails, never a skip."""
    params: list[Any] = []
    for name in SUITE_FILES:
        path = _suite_dir() / name
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            params.append(pytest.param(name, None, f"{exc}", id=f"{name}:unreadable"))
            continue
        for i, record in enumerate(records):
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
    if record.get("disabled"):
        pytest.skip(reason=str(record.get("comment", "disabled record")))
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
