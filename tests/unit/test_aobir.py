"""The `.aobir` file: round trips, determinism, and a precise refusal for every kind of damage."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aobc.backend import aobir
from aobc.backend.aobir import FORMAT_VERSION, HEADER_SIZE, MAGIC, decode, encode, ir_hash
from aobc.backend.lower import lower
from aobc.backend.text import ir_to_text
from aobc.errors import IRFormatError
from aobc.frontend import load_text
from aobc.runtime.execir import ExecEdge, ExecIR
from aobc.source import JsonLoc

SAMPLE = """
workflow w {
  input n: int
  input m: str = "x"
  output r = b.x
  a = function "m:f" { effect: pure }
  b = http GET "https://api.example.com/x" { effect: idempotent, timeout: 10s, retries: 2 }
  c = approval { approvers: ["ops"], timeout: 1h, escalate: ["lead"] }
  s = composite workflow inner { input q: any  z = function "m:g" { effect: pure } } {
    effect: pure, args: { q: a.v }
  }
  a -> b -> c
  a -> s
  c -[approved]-> d
  d = join any
  b -[when b.ok]-> d
}
"""


@pytest.fixture(scope="module")
def ir() -> ExecIR:
    return lower(load_text(SAMPLE), {"b": "sha256:" + "1" * 64})


@pytest.fixture(scope="module")
def data(ir: ExecIR) -> bytes:
    return encode(ir)


def _refusal(data: bytes, name: str = "f.aobir") -> tuple[str, str]:
    """The code and message `decode` refuses `data` with; exactly one diagnostic, located."""
    with pytest.raises(IRFormatError) as exc:
        decode(data, name)
    (diag,) = exc.value.diagnostics
    assert diag.is_error
    assert diag.code is not None
    assert diag.loc == JsonLoc(name, "")
    assert diag.message[:1].islower(), diag.message
    assert not diag.message.endswith(".")
    return diag.code.name, diag.message


def _sign(payload: bytes, *, version: int = FORMAT_VERSION, flags: int = 0) -> bytes:
    digest = hashlib.sha256(payload).digest()
    return struct.pack(">8sHHQ32s", MAGIC, version, flags, len(payload), digest) + payload


def _resigned(ir: ExecIR, **changes: Any) -> bytes:
    """A file whose payload is `ir` with `changes`, correctly signed: only validation can tell."""
    return _sign(msgspec.msgpack.encode(msgspec.structs.replace(ir, **changes)))


# --- round trips -----------------------------------------------------------------------


def test_round_trip(ir: ExecIR, data: bytes) -> None:
    assert decode(data) == ir
    assert encode(decode(data)) == data


def test_encoding_is_deterministic(ir: ExecIR, data: bytes) -> None:
    assert encode(ir) == data
    assert encode(lower(load_text(SAMPLE), {"b": "sha256:" + "1" * 64})) == data


def test_header_layout(data: bytes) -> None:
    assert HEADER_SIZE == 52
    assert data[:8] == b"AOBIR\x00\r\n"
    version, flags, length = struct.unpack(">HHQ", data[8:20])
    assert (version, flags, length) == (FORMAT_VERSION, 0, len(data) - HEADER_SIZE)
    assert data[20:52] == hashlib.sha256(data[52:]).digest()


def test_ir_hash_names_the_payload(ir: ExecIR, data: bytes) -> None:
    assert ir_hash(ir) == "sha256:" + hashlib.sha256(data[HEADER_SIZE:]).hexdigest()
    assert ir_hash(ir) != ir.workflow_hash


def test_write_and_read(tmp_path: Path, ir: ExecIR, data: bytes) -> None:
    path = tmp_path / "w.aobir"
    path.write_bytes(b"old")
    aobir.write(path, ir)
    assert path.read_bytes() == data
    assert aobir.read(path) == ir
    assert aobir.read(str(path)) == ir
    assert os.listdir(tmp_path) == ["w.aobir"]  # no temporary file left behind


def test_write_leaves_no_temporary_file_on_failure(tmp_path: Path, ir: ExecIR) -> None:
    target = tmp_path / "d"
    target.mkdir()
    (target / "x").write_text("occupied")
    with pytest.raises(IsADirectoryError):  # os.replace cannot put a file over a directory
        aobir.write(target, ir)
    assert sorted(os.listdir(tmp_path)) == ["d"]


def test_decode_accepts_a_bytearray(ir: ExecIR, data: bytes) -> None:
    assert decode(bytearray(data)) == ir
    assert decode(memoryview(data)) == ir


# --- refusals --------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 1, 5, 8, 9, 10, 11, 19, 20, 51])
def test_truncated_inside_the_header(data: bytes, keep: int) -> None:
    code, message = _refusal(data[:keep])
    assert code == "ir-truncated"
    assert f"found {keep} bytes" in message
    assert "52-byte header" in message


@pytest.mark.parametrize("cut", [1, 2, 100, -1])
def test_truncated_payload(data: bytes, cut: int) -> None:
    keep = HEADER_SIZE + cut if cut >= 0 else len(data) + cut
    code, message = _refusal(data[:keep])
    payload = len(data) - HEADER_SIZE
    assert code == "ir-truncated"
    assert message == (
        f"file is truncated: header says {payload} payload bytes, found {keep - HEADER_SIZE}"
    )


def test_header_only(data: bytes) -> None:
    assert _refusal(data[:HEADER_SIZE])[0] == "ir-truncated"


@pytest.mark.parametrize("offset", [0, 1, 100, -1])
def test_flipped_payload_byte_fails_the_checksum(data: bytes, offset: int) -> None:
    damaged = bytearray(data)
    damaged[HEADER_SIZE + offset if offset >= 0 else offset] ^= 0x40
    code, message = _refusal(bytes(damaged))
    assert code == "ir-checksum"
    assert message == "content does not match its checksum: the file was modified or damaged"


def test_flipped_checksum_byte(data: bytes) -> None:
    damaged = bytearray(data)
    damaged[30] ^= 1
    assert _refusal(bytes(damaged))[0] == "ir-checksum"


def test_newer_version(data: bytes) -> None:
    bumped = bytearray(data)
    bumped[9] += 1
    code, message = _refusal(bytes(bumped))
    assert code == "ir-version"
    assert message == (
        f"written by a newer aobc (format {FORMAT_VERSION + 1}; "
        f"this aobc reads format {FORMAT_VERSION})"
    )


def test_newer_version_is_named_even_if_the_rest_changed(data: bytes) -> None:
    # A future header may be a different size; the version right after the magic still reads.
    assert _refusal(MAGIC + struct.pack(">H", 7))[0] == "ir-version"
    assert _refusal(MAGIC + struct.pack(">H", 7) + b"\xff" * 3)[0] == "ir-version"


def test_older_version(data: bytes) -> None:
    code, message = _refusal(data[:8] + b"\x00\x00" + data[10:])
    assert code == "ir-version"
    assert "an older aobc (format 0;" in message


def test_unknown_flags(data: bytes) -> None:
    code, message = _refusal(data[:10] + b"\x00\x04" + data[12:])
    assert code == "ir-version"
    assert "0x0004" in message


@pytest.mark.parametrize(
    ("content", "hint"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 60, None),
        (b"AOBIX\x00\r\n" + b"\x00" * 60, None),
        (b'{"name": "w", "nodes": []}', "JSON"),
        (b'\xef\xbb\xbf\n  {"name": "w"}', "JSON"),
        (b'workflow w {\n  a = function "m:f" { effect: pure }\n}\n', "DSL"),
        (b"hello", None),
    ],
)
def test_not_an_ir_file(content: bytes, hint: str | None) -> None:
    code, message = _refusal(content)
    assert code == "ir-format"
    assert message.startswith("not an aobc IR file")
    if hint is not None:
        assert hint in message
    else:
        assert message == "not an aobc IR file"


def test_text_mode_mangling(data: bytes) -> None:
    code, message = _refusal(data.replace(b"\r\n", b"\n", 1))
    assert code == "ir-format"
    assert "text-mode" in message


def test_trailing_bytes(data: bytes) -> None:
    code, message = _refusal(data + b"\x00\x00\x00")
    assert code == "ir-corrupt"
    assert (
        message == f"file has 3 unexpected bytes after its {len(data) - HEADER_SIZE}-byte payload"
    )


def test_signed_garbage_payload() -> None:
    code, message = _refusal(_sign(b"\xc1"))
    assert code == "ir-corrupt"
    assert message.startswith("payload is not a valid ExecIR")
    code, message = _refusal(_sign(msgspec.msgpack.encode([1, 2, 3])))
    assert code == "ir-corrupt"
    code, message = _refusal(_sign(msgspec.msgpack.encode({"name": 3})))
    assert code == "ir-corrupt"
    assert "$.name" in message


def test_signed_deeply_nested_payload() -> None:
    assert _refusal(_sign(b"\x91" * 100_000 + b"\xc0"))[0] == "ir-corrupt"


def _node(ir: ExecIR, i: int, **changes: Any) -> list[Any]:
    nodes = list(ir.nodes)
    nodes[i] = msgspec.structs.replace(nodes[i], **changes)
    return nodes


def _corruptions(ir: ExecIR) -> list[tuple[str, dict[str, Any], str]]:
    """(name, ExecIR field changes, expected message fragment), each one broken invariant."""
    e0 = ir.edges[0]
    sub = ir.subs[0]
    return [
        ("format", {"format": 2}, "format field says 2"),
        ("hash", {"workflow_hash": "md5:00"}, "workflow hash"),
        ("kind", {"nodes": _node(ir, 0, kind=9)}, "node 0 ('a') kind is 9"),
        ("effect", {"nodes": _node(ir, 0, effect=-1)}, "effect is -1"),
        ("priority", {"nodes": _node(ir, 0, priority=3)}, "priority is 3"),
        ("join mode", {"nodes": _node(ir, 0, join_mode=1)}, "function node with join mode"),
        ("join n", {"nodes": _node(ir, 4, join_n=2)}, "does not join n_of_m"),
        ("n of m", {"nodes": _node(ir, 4, join_mode=2, join_n=0)}, "n_of_m with n = 0"),
        ("timeout", {"nodes": _node(ir, 0, timeout_ms=-5)}, "timeout -5"),
        ("attempts", {"nodes": _node(ir, 0, max_attempts=0)}, "0 max attempts"),
        ("config range", {"nodes": _node(ir, 0, config=999)}, "config is constant #999"),
        ("config type", {"nodes": _node(ir, 0, config=ir.edges[3].label)}, "not a dict"),
        ("config hash", {"nodes": _node(ir, 0, config_hash="xyz")}, "config hash"),
        ("origin", {"nodes": _node(ir, 0, origin=-2)}, "origin is constant #-2"),
        (
            "origin type",
            {"nodes": _node(ir, 0, origin=0)},
            "origin is constant #0, which is not a str",
        ),
        ("sub range", {"nodes": _node(ir, 3, sub=1)}, "runs sub 1, but there are 1 subs"),
        ("sub on non-composite", {"nodes": _node(ir, 0, sub=0)}, "function node with sub 0"),
        ("duplicate id", {"nodes": _node(ir, 1, id="a")}, "repeats an id"),
        (
            "edge range",
            {"edges": [ExecEdge(src=0, dst=99, label=-1, when=-1), *ir.edges[1:]]},
            "joins %0 and %99",
        ),
        (
            "label range",
            {"edges": [ExecEdge(src=e0.src, dst=e0.dst, label=500, when=-1), *ir.edges[1:]]},
            "edge e0 label",
        ),
        (
            "guard type",
            {"edges": [ExecEdge(src=e0.src, dst=e0.dst, label=-1, when=0), *ir.edges[1:]]},
            "edge e0 guard",
        ),
        ("offsets length", {"succ_offsets": ir.succ_offsets[:-1]}, "succ_offsets must have"),
        ("offsets order", {"succ_offsets": [0, 3, 2, 5, 5, 5]}, "succ_offsets decrease"),
        ("targets length", {"succ_targets": ir.succ_targets[:-1]}, "one entry per edge"),
        ("targets", {"succ_targets": [1, 3, 2, 4, 3]}, "succ arrays put edge"),
        ("edge twice", {"succ_edges": [0, 0, 1, 4, 3]}, "not a fresh edge index"),
        ("pred sources", {"pred_sources": [0, 1, 0, 1, 2]}, "pred arrays put edge"),
        ("pred offsets", {"pred_offsets": [0, 1, 1, 2, 3, 5]}, "pred arrays put edge"),
        ("pred counts", {"pred_counts": [0, 1, 1, 1, 1]}, "pred_counts"),
        ("roots", {"roots": [0, 3]}, "roots"),
        ("topo length", {"topo": [0, 1, 2, 3]}, "topo has 4 entries"),
        ("topo permutation", {"topo": [0, 1, 2, 2, 3]}, "not a permutation"),
        ("topo order", {"topo": [0, 2, 1, 4, 3]}, "topo puts %2 before %1"),
        ("const type", {"consts": [*ir.consts, b"bytes"]}, "holds a bytes"),
        ("const nan", {"consts": [*ir.consts, float("nan")]}, "holds nan"),
        ("const key", {"consts": [*ir.consts, {1: 2}]}, "non-string key"),
        (
            "input type",
            {"inputs": [msgspec.structs.replace(ir.inputs[0], type="blob")]},
            "unknown type",
        ),
        ("input twice", {"inputs": [ir.inputs[0], ir.inputs[0]]}, "declared twice"),
        (
            "output expr",
            {"outputs": [msgspec.structs.replace(ir.outputs[0], expr=0)]},
            "output 'r'",
        ),
        (
            "sub",
            {"subs": [msgspec.structs.replace(sub, topo=[1])]},
            "sub 0: topo is not a permutation",
        ),
        ("sub format", {"subs": [msgspec.structs.replace(sub, format=3)]}, "sub 0: its format"),
    ]


def test_every_corruption_case_is_named(ir: ExecIR) -> None:
    names = [name for name, _, _ in _corruptions(ir)]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("index", range(41))
def test_resigned_structural_corruption(ir: ExecIR, index: int) -> None:
    cases = _corruptions(ir)
    assert len(cases) == 41
    _name, changes, fragment = cases[index]
    code, message = _refusal(_resigned(ir, **changes))
    assert code == "ir-corrupt"
    assert message.startswith("inconsistent IR: ")
    assert fragment in message


def test_validate_accepts_what_lower_produces(ir: ExecIR) -> None:
    aobir.validate(ir)


def test_validate_reports_with_a_name(ir: ExecIR) -> None:
    with pytest.raises(IRFormatError) as exc:
        aobir.validate(msgspec.structs.replace(ir, roots=[]), "mem")
    assert exc.value.codes == ["ir-corrupt"]
    assert exc.value.diagnostics[0].loc == JsonLoc("mem", "")


# --- reading files ---------------------------------------------------------------------


def test_read_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.aobir"
    with pytest.raises(IRFormatError) as exc:
        aobir.read(path)
    (diag,) = exc.value.diagnostics
    assert diag.code is not None
    assert diag.code.name == "io-error"
    assert diag.message == f"cannot read {str(path)!r}: no such file or directory"
    assert diag.loc == JsonLoc(str(path), "")


def test_read_a_directory(tmp_path: Path) -> None:
    with pytest.raises(IRFormatError) as exc:
        aobir.read(tmp_path)
    assert exc.value.codes == ["io-error"]


def test_read_names_the_file_in_refusals(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad.aobir"
    path.write_bytes(data[:-1])
    with pytest.raises(IRFormatError) as exc:
        aobir.read(path)
    assert exc.value.codes == ["ir-truncated"]
    assert exc.value.diagnostics[0].loc == JsonLoc(str(path), "")


# --- nothing but IRFormatError escapes ---------------------------------------------------


def _decode_or_refuse(data: bytes) -> ExecIR | None:
    try:
        ir = decode(data)
    except IRFormatError as err:
        diagnostics = err.diagnostics
    else:
        ir_to_text(ir)  # anything that passes validation must also render
        return ir
    assert len(diagnostics) == 1
    return None


@settings(deadline=None, derandomize=True, max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(junk: bytes) -> None:
    _decode_or_refuse(junk)
    _decode_or_refuse(MAGIC + junk)
    _decode_or_refuse(MAGIC + struct.pack(">H", FORMAT_VERSION) + junk)


_mutation = st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
    st.integers(min_value=0),
    st.integers(0, 255),
)


def _mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for op, where, byte in ops:
        if not out:
            break
        i = where % len(out)
        if op == "flip":
            out[i] ^= 1 << (byte % 8)
        elif op == "set":
            out[i] = byte
        elif op == "insert":
            out.insert(i, byte)
        elif op == "delete":
            del out[i]
        else:
            del out[i:]
    return bytes(out)


@settings(deadline=None, derandomize=True, max_examples=300)
@given(st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_files_never_crash(data: bytes, ops: list[tuple[str, int, int]]) -> None:
    mutated = _mutate(data, ops)
    result = _decode_or_refuse(mutated)
    assert result is None or mutated == data


@settings(deadline=None, derandomize=True, max_examples=400)
@given(st.lists(_mutation, min_size=1, max_size=3))
def test_mutated_resigned_payloads_never_crash(
    data: bytes, ops: list[tuple[str, int, int]]
) -> None:
    # Re-signing gets every mutation past the checksum, so the decoder and the validator see it.
    _decode_or_refuse(_sign(_mutate(data[HEADER_SIZE:], ops)))
