"""The `.aobir` file: a compiled workflow (`ExecIR`) behind a small, checked header.

Layout, all integers big-endian:

    offset  size  field
         0     8  magic  b"AOBIR\\x00\\r\\n"
         8     2  format version (FORMAT_VERSION)
        10     2  flags (0; no flags are defined)
        12     8  payload length in bytes
        20    32  sha256 of the payload
        52     -  payload: the ExecIR as msgpack (msgspec), exactly `payload length` bytes

The magic ends in CR-LF, as PNG's does, so a transfer in text mode that rewrites line endings is
caught at once; the NUL stops tools from treating the file as text. The version comes right
after the magic so a file from a newer aobc is named as such even if the rest of its header has
changed shape.

Reading never trusts the file: `decode` checks, in order, the magic, the version, the sizes, the
checksum, the msgpack structure and then every index and array invariant of the ExecIR (a file
re-signed after tampering must not crash the interpreter later). Every refusal is an
`IRFormatError` with one diagnostic; nothing else escapes `decode` or `read`.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

import msgspec

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.errorcodes import ErrorCode
from aobc.errors import IRFormatError
from aobc.ir import ValueType
from aobc.runtime.execir import (
    EFFECTS,
    FORMAT_VERSION,
    J_ALL,
    J_N_OF_M,
    JOIN_MODES,
    K_COMPOSITE,
    K_JOIN,
    KINDS,
    PRIORITIES,
    ExecIR,
    ExecNode,
)
from aobc.source import JsonLoc

__all__ = [
    "FORMAT_VERSION",
    "HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "decode",
    "encode",
    "encode_payload",
    "ir_hash",
    "read",
    "validate",
    "write",
]

MAGIC: Final = b"AOBIR\x00\r\n"
HEADER: Final = struct.Struct(">8sHHQ32s")
HEADER_SIZE: Final = HEADER.size  # 52
_VERSION_END: Final = len(MAGIC) + 2

#: Deepest nesting accepted inside a constant. Real configs are bounded by the loader's
#: `max_depth` (64 by default); this only keeps later recursive encoders off the stack limit.
MAX_CONST_DEPTH: Final = 256

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(ExecIR)
_INPUT_TYPES: Final = frozenset(t.value for t in ValueType)
_HEX: Final = frozenset("0123456789abcdef")


# --- writing -----------------------------------------------------------------------------


def encode_payload(ir: ExecIR) -> bytes:
    """The msgpack payload of `ir`; deterministic, since structs and dicts keep their order."""
    return _ENCODER.encode(ir)


def encode(ir: ExecIR) -> bytes:
    """The bytes of a `.aobir` file holding `ir`."""
    payload = encode_payload(ir)
    header = HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(payload), hashlib.sha256(payload).digest())
    return header + payload


def ir_hash(ir: ExecIR) -> str:
    """`sha256:<hex>` of the payload: the id of the compiled artifact."""
    return "sha256:" + hashlib.sha256(encode_payload(ir)).hexdigest()


def write(path: str | os.PathLike[str], ir: ExecIR) -> None:
    """Write `ir` to `path` atomically: readers see the old file or the new one, never half.

    The temporary file lives in the target's directory, because `os.replace` is only atomic
    within one file system. `OSError` propagates to the caller.
    """
    data = encode(ir)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as for any new file; mkstemp's 0o600
    # would survive the rename and surprise whoever shares the artifact.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- reading -----------------------------------------------------------------------------


class _Corrupt(Exception):
    """An inconsistency found while validating; becomes an `ir-corrupt` diagnostic."""


def _refuse(code: ErrorCode, message: str, name: str) -> NoReturn:
    raise IRFormatError(Diagnostic.error(code, message, JsonLoc(name, "")))


def _not_ir_message(data: bytes) -> str:
    if data.startswith(MAGIC[:6]):
        # "AOBIR\0" then something other than CR-LF: the line ending was rewritten in transit.
        return "not an aobc IR file: its header was mangled, as by a text-mode transfer"
    text = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"{"):
        return "not an aobc IR file: it looks like JSON text; compile it first with `aobc compile`"
    if text.startswith(b"workflow"):
        return "not an aobc IR file: it looks like DSL source; compile it first with `aobc compile`"
    return "not an aobc IR file"


def _version_message(version: int) -> str:
    by = "a newer" if version > FORMAT_VERSION else "an older"
    return f"written by {by} aobc (format {version}; this aobc reads format {FORMAT_VERSION})"


def _check_header(data: bytes, name: str) -> None:
    """Refuse unless magic, version, flags and sizes are right."""
    if not MAGIC.startswith(data[: len(MAGIC)]):
        _refuse(ec.IR_FORMAT, _not_ir_message(data), name)
    if len(data) >= _VERSION_END:
        (version,) = struct.unpack_from(">H", data, len(MAGIC))
        if version != FORMAT_VERSION:
            _refuse(ec.IR_VERSION, _version_message(version), name)
    if len(data) < HEADER_SIZE:
        _refuse(
            ec.IR_TRUNCATED,
            f"file is truncated: found {len(data)} bytes, less than the {HEADER_SIZE}-byte header",
            name,
        )
    _magic, _version, flags, length, _digest = HEADER.unpack_from(data)
    if flags != 0:
        _refuse(
            ec.IR_VERSION,
            f"file uses header flags {flags:#06x}, which this aobc does not know "
            f"(it reads format {FORMAT_VERSION} without flags)",
            name,
        )
    found = len(data) - HEADER_SIZE
    if found < length:
        _refuse(
            ec.IR_TRUNCATED,
            f"file is truncated: header says {length} payload bytes, found {found}",
            name,
        )
    if found > length:
        _refuse(
            ec.IR_CORRUPT,
            f"file has {found - length} unexpected bytes after its {length}-byte payload",
            name,
        )


def decode(data: bytes | bytearray | memoryview, name: str = "<ir>") -> ExecIR:
    """The ExecIR in the bytes of a `.aobir` file; `IRFormatError` when they are not one.

    `name` (usually the file's path) is where the diagnostic points.
    """
    data = bytes(data)  # a no-op for bytes; a snapshot of a buffer that might change under us
    _check_header(data, name)
    digest = data[HEADER_SIZE - 32 : HEADER_SIZE]
    payload = memoryview(data)[HEADER_SIZE:]
    if hashlib.sha256(payload).digest() != digest:
        _refuse(
            ec.IR_CHECKSUM,
            "content does not match its checksum: the file was modified or damaged",
            name,
        )
    try:
        ir = _DECODER.decode(payload)
    except RecursionError:
        _refuse(ec.IR_CORRUPT, "payload is nested too deeply to be an ExecIR", name)
    except (msgspec.DecodeError, ValueError, TypeError, OverflowError) as err:
        _refuse(ec.IR_CORRUPT, f"payload is not a valid ExecIR: {_lower_first(str(err))}", name)
    validate(ir, name)
    return ir


def read(path: str | os.PathLike[str]) -> ExecIR:
    """The ExecIR in a `.aobir` file; `IRFormatError` (maybe `io-error`) when it has none."""
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except OSError as err:
        reason = (err.strerror or str(err)).lower()
        _refuse(ec.IO_ERROR, f"cannot read {name!r}: {reason}", name)
    return decode(data, name)


def _lower_first(text: str) -> str:
    """`Expected ...` -> `expected ...`, but `MessagePack ...` stays as it is."""
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


# --- validation --------------------------------------------------------------------------


def validate(ir: ExecIR, name: str = "<ir>") -> None:
    """Check every invariant the interpreters rely on, for `ir` and its subs.

    Raises `IRFormatError` (`ir-corrupt`) naming the first problem found. `decode` calls it on
    every file; call it directly on an ExecIR that did not come from `lower`.
    """
    try:
        _validate_tree(ir, FORMAT_VERSION)
    except _Corrupt as err:
        _refuse(ec.IR_CORRUPT, f"inconsistent IR: {err}", name)


def _validate_tree(ir: ExecIR, version: int) -> None:
    # Iterative over subs, so a deep nest of sub-workflows cannot exhaust the stack.
    stack: list[tuple[str, ExecIR]] = [("", ir)]
    while stack:
        where, cur = stack.pop()
        try:
            _validate_one(cur, version)
        except _Corrupt as err:
            raise _Corrupt(f"{where}{err}") from None
        stack.extend((f"{where}sub {i}: ", s) for i, s in reversed(list(enumerate(cur.subs))))


def _validate_one(ir: ExecIR, version: int) -> None:
    if ir.format != version:
        raise _Corrupt(f"its format field says {ir.format}, but the header says {version}")
    if not _is_hash(ir.workflow_hash, "sha256:"):
        raise _Corrupt(f"workflow hash {ir.workflow_hash!r} is not sha256:<64 hex digits>")
    for i, value in enumerate(ir.consts):
        _check_json(value, f"constant #{i}")
    ids: set[str] = set()
    for i, node in enumerate(ir.nodes):
        what = f"node {i} ({node.id!r})"
        if node.id in ids:
            raise _Corrupt(f"{what} repeats an id")
        ids.add(node.id)
        _check_node_codes(node, what)
        _check_node_refs(ir, node, what)
    n = len(ir.nodes)
    for k, e in enumerate(ir.edges):
        if not (0 <= e.src < n and 0 <= e.dst < n):
            raise _Corrupt(f"edge e{k} joins %{e.src} and %{e.dst}, but there are {n} nodes")
        _const_ref(ir, e.label, f"edge e{k} label", str, optional=True)
        _const_ref(ir, e.when, f"edge e{k} guard", str, optional=True)
    _check_csr(ir, succ=True)
    _check_csr(ir, succ=False)
    _check_order(ir)
    _check_io(ir)


def _is_hash(value: str, prefix: str) -> bool:
    digits = value[len(prefix) :]
    return value.startswith(prefix) and len(digits) == 64 and _HEX.issuperset(digits)


def _check_json(value: Any, what: str) -> None:
    """`value` is a JSON value: what the canonical encoder and the interpreters expect."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        t = type(v)
        if v is None or t is str or t is bool or t is int:
            continue
        if t is float:
            if not math.isfinite(v):
                raise _Corrupt(f"{what} holds {v}, which JSON cannot represent")
            continue
        if depth >= MAX_CONST_DEPTH:
            raise _Corrupt(f"{what} is nested more than {MAX_CONST_DEPTH} levels deep")
        if t is list:
            stack.extend((x, depth + 1) for x in v)
        elif t is dict:
            for key, x in v.items():
                if type(key) is not str:
                    raise _Corrupt(f"{what} has a non-string key {key!r}")
                stack.append((x, depth + 1))
        else:
            raise _Corrupt(f"{what} holds a {t.__name__}, which is not a JSON value")


def _code(value: int, names: Sequence[str], what: str) -> None:
    if not 0 <= value < len(names):
        raise _Corrupt(f"{what} is {value}; the known codes are 0..{len(names) - 1}")


def _check_node_codes(node: ExecNode, what: str) -> None:
    _code(node.kind, KINDS, f"{what} kind")
    _code(node.effect, EFFECTS, f"{what} effect")
    _code(node.priority, PRIORITIES, f"{what} priority")
    _code(node.join_mode, JOIN_MODES, f"{what} join mode")
    if node.kind != K_JOIN and node.join_mode != J_ALL:
        raise _Corrupt(f"{what} is a {KINDS[node.kind]} node with join mode {node.join_mode}")
    if node.join_mode == J_N_OF_M and node.join_n < 1:
        raise _Corrupt(f"{what} joins n_of_m with n = {node.join_n}")
    if node.join_mode != J_N_OF_M and node.join_n != 0:
        raise _Corrupt(f"{what} has join n = {node.join_n} but does not join n_of_m")
    if node.timeout_ms < -1:
        raise _Corrupt(f"{what} has timeout {node.timeout_ms} ms")
    if node.max_attempts < 1:
        raise _Corrupt(f"{what} has {node.max_attempts} max attempts")


def _check_node_refs(ir: ExecIR, node: ExecNode, what: str) -> None:
    _const_ref(ir, node.config, f"{what} config", dict)
    if not _is_hash(node.config_hash, ""):
        raise _Corrupt(f"{what} config hash {node.config_hash!r} is not 64 hex digits")
    _const_ref(ir, node.origin, f"{what} origin", str, optional=True)
    if node.kind == K_COMPOSITE:
        if not 0 <= node.sub < len(ir.subs):
            raise _Corrupt(f"{what} runs sub {node.sub}, but there are {len(ir.subs)} subs")
    elif node.sub != -1:
        raise _Corrupt(f"{what} is a {KINDS[node.kind]} node with sub {node.sub}")


def _const_ref(ir: ExecIR, index: int, what: str, kind: type, *, optional: bool = False) -> None:
    if optional and index == -1:
        return
    if not 0 <= index < len(ir.consts):
        raise _Corrupt(f"{what} is constant #{index}, but there are {len(ir.consts)} constants")
    if type(ir.consts[index]) is not kind:
        raise _Corrupt(f"{what} is constant #{index}, which is not a {kind.__name__}")


def _check_csr(ir: ExecIR, *, succ: bool) -> None:
    """One CSR side against the edge list: each edge exactly once, in its endpoint's row."""
    side = "succ" if succ else "pred"
    offsets, ends, edge_ids = (
        (ir.succ_offsets, ir.succ_targets, ir.succ_edges)
        if succ
        else (ir.pred_offsets, ir.pred_sources, ir.pred_edges)
    )
    n, m = len(ir.nodes), len(ir.edges)
    if len(offsets) != n + 1 or offsets[0] != 0 or offsets[-1] != m:
        raise _Corrupt(f"{side}_offsets must have {n + 1} entries running from 0 to {m}")
    if len(ends) != m or len(edge_ids) != m:
        raise _Corrupt(f"{side} arrays must have one entry per edge ({m})")
    for i in range(n):
        if offsets[i] > offsets[i + 1]:
            raise _Corrupt(f"{side}_offsets decrease at node {i}")
    seen = bytearray(m)
    for i in range(n):
        for k in range(offsets[i], offsets[i + 1]):
            eid = edge_ids[k]
            if not 0 <= eid < m or seen[eid]:
                raise _Corrupt(f"{side}_edges[{k}] = {eid} is not a fresh edge index")
            seen[eid] = 1
            e = ir.edges[eid]
            here, there = (e.src, e.dst) if succ else (e.dst, e.src)
            if here != i or ends[k] != there:
                raise _Corrupt(f"{side} arrays put edge e{eid} in the row of node {i}")


def _check_order(ir: ExecIR) -> None:
    n = len(ir.nodes)
    counts = [ir.pred_offsets[i + 1] - ir.pred_offsets[i] for i in range(n)]
    if ir.pred_counts != counts:
        raise _Corrupt("pred_counts do not match the pred arrays")
    if ir.roots != [i for i, c in enumerate(counts) if c == 0]:
        raise _Corrupt("roots are not the nodes without predecessors")
    pos = [-1] * n
    if len(ir.topo) != n:
        raise _Corrupt(f"topo has {len(ir.topo)} entries for {n} nodes")
    for p, i in enumerate(ir.topo):
        if not 0 <= i < n or pos[i] != -1:
            raise _Corrupt(f"topo is not a permutation of the nodes (at position {p})")
        pos[i] = p
    for k, e in enumerate(ir.edges):
        if pos[e.src] >= pos[e.dst]:
            raise _Corrupt(f"topo puts %{e.dst} before %{e.src}, against edge e{k}")


def _check_io(ir: ExecIR) -> None:
    names: set[str] = set()
    for d in ir.inputs:
        if d.name in names:
            raise _Corrupt(f"input {d.name!r} is declared twice")
        names.add(d.name)
        if d.type not in _INPUT_TYPES:
            raise _Corrupt(f"input {d.name!r} has unknown type {d.type!r}")
        _check_json(d.default, f"the default of input {d.name!r}")
    names.clear()
    for o in ir.outputs:
        if o.name in names:
            raise _Corrupt(f"output {o.name!r} is declared twice")
        names.add(o.name)
        _const_ref(ir, o.expr, f"output {o.name!r}", str)
