"""ABI "aobc-pass-v1": the calling convention, the manifest, and what a failure is.

The contract a module must meet is written down in wasm_passes/ABI.md; this module holds the
host's side of it: the export signatures, the packing of `run`'s i64 result, and the parsing
of the `meta()` manifest (name, version, options schema, fields read).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

import jsonschema

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.errorcodes import ErrorCode
from aobc.wasm.projection import ALL_FIELDS, FIELDS, is_field

ABI_NAME: Final = "aobc-pass-v1"
ABI_VERSION: Final = 1

#: Exports every plugin must have: name -> (params, results) as wasm value types.
REQUIRED_EXPORTS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "abi_version": ((), ("i32",)),
    "alloc": (("i32",), ("i32",)),
    "run": (("i32", "i32"), ("i64",)),
}
OPTIONAL_EXPORTS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "meta": ((), ("i64",)),
}

#: Pipeline options the host reads itself; a plugin may not declare options by these names.
HOST_OPTIONS: Final = ("path", "fuel", "timeout-ms", "memory-mb", "output-kb", "on-error")

_PASS_NAME: Final = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_OPTION_TYPES: Final = ("boolean", "integer", "number", "string")
_MASK64: Final = (1 << 64) - 1


class PluginFailure(Exception):
    """A plugin failed in a way the ABI names; `code` says which (wasm-trap, wasm-fuel, ...)."""

    def __init__(self, code: ErrorCode, message: str, notes: tuple[Diagnostic, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.notes = notes


def unpack(packed: int) -> tuple[bool, int, int]:
    """(error bit, pointer, length) of `run`'s or `meta`'s i64 result."""
    value = packed & _MASK64  # wasmtime hands the i64 back signed
    return bool(value >> 63), (value >> 32) & 0x7FFF_FFFF, value & 0xFFFF_FFFF


def pack(err: bool, ptr: int, length: int) -> int:
    """The inverse of `unpack` (for tests and documentation)."""
    return (int(err) << 63) | ((ptr & 0x7FFF_FFFF) << 32) | (length & 0xFFFF_FFFF)


@dataclass(frozen=True, slots=True)
class Manifest:
    """What `meta()` says about a plugin."""

    name: str
    version: str = "0"
    summary: str = ""
    #: JSON Schema of the options object (type object, flat properties of scalar types).
    options: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    #: Projection fields the plugin reads (wasm_passes/ABI.md, "The graph").
    reads: tuple[str, ...] = ALL_FIELDS

    @property
    def properties(self) -> dict[str, dict[str, Any]]:
        props = self.options.get("properties", {})
        return props if isinstance(props, dict) else {}

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "summary": self.summary,
            "options": self.options,
            "reads": list(self.reads),
        }


def default_name(stem: str) -> str:
    """A pass name for a plugin without a manifest: its file name, kebab-cased."""
    name = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
    return name if _PASS_NAME.fullmatch(name) else "wasm-plugin"


def _fail(message: str) -> PluginFailure:
    return PluginFailure(ec.WASM_ABI, f"its manifest (meta) is invalid: {message}")


def parse_manifest(raw: bytes, fallback_name: str) -> Manifest:
    """Parse and check the JSON `meta()` returned; raises PluginFailure (wasm-abi)."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise _fail(f"not UTF-8 JSON ({err})") from None
    if not isinstance(doc, dict):
        raise _fail("it must be a JSON object")
    abi = doc.get("abi", ABI_VERSION)
    if abi != ABI_VERSION:
        raise PluginFailure(
            ec.WASM_ABI,
            f"its manifest says ABI {abi!r}, but this host speaks {ABI_NAME} (version {ABI_VERSION})",
        )
    name = doc.get("name", fallback_name)
    if not isinstance(name, str) or not _PASS_NAME.fullmatch(name):
        raise _fail(f"name must be a kebab-case pass name, not {name!r}")
    version = doc.get("version", "0")
    summary = doc.get("summary", "")
    if not isinstance(version, str) or not isinstance(summary, str):
        raise _fail("version and summary must be strings")
    return Manifest(
        name=name,
        version=version,
        summary=summary,
        options=_options_schema(doc.get("options", {"type": "object"})),
        reads=_reads(doc.get("reads", list(ALL_FIELDS))),
    )


def _options_schema(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise _fail('options must be a JSON Schema of "type": "object"')
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as err:
        raise _fail(f"options is not a valid JSON Schema: {err.message}") from None
    props = schema.get("properties", {})
    for key, prop in props.items():
        if key in HOST_OPTIONS:
            raise _fail(f'option "{key}" is reserved for the host')
        if not _PASS_NAME.fullmatch(key):
            raise _fail(f'option "{key}" is not a kebab-case name')
        kind = prop.get("type") if isinstance(prop, dict) else None
        if kind not in _OPTION_TYPES and not (isinstance(prop, dict) and "enum" in prop):
            raise _fail(f'option "{key}" must have a type among {", ".join(_OPTION_TYPES)}')
    return dict(schema)


def _reads(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise _fail("reads must be an array of field names")
    unknown = sorted(x for x in raw if not is_field(x))
    if unknown:
        raise _fail(
            f'unknown field "{unknown[0]}" in reads (known: {", ".join(FIELDS)}, node.<field>)'
        )
    return tuple(dict.fromkeys(raw))
