"""Compiled plugin modules, cached on disk and in memory.

Compiling a module with Cranelift costs far more than running a pass, so each module is
compiled once per machine: the compiled artifact is stored under a key made of the module's
sha256, the engine settings and the wasmtime version (any of which changes the machine code),
and deserialized on later runs. The directory is `$AOBC_WASM_CACHE`, else
`$XDG_CACHE_HOME/aobc/wasm`, else `~/.cache/aobc/wasm`; `AOBC_WASM_CACHE=off` disables it.

wasmtime trusts what it deserializes, so each entry carries a sha256 of its payload, written
atomically; an entry that is truncated or does not match is recompiled and replaced.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
import threading
from importlib.metadata import version
from pathlib import Path
from typing import Final

import wasmtime

_MAGIC: Final = b"aobc-wasm-cache 1\n"
_HASH_LEN: Final = 32
ENV: Final = "AOBC_WASM_CACHE"


def wasmtime_version() -> str:
    return version("wasmtime")


def cache_dir() -> Path | None:
    """Where compiled modules are kept, or None when the disk cache is off."""
    env = os.environ.get(ENV)
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "aobc" / "wasm"


class ModuleCache:
    """Compiled modules by key: in this process, then on disk, then compiled."""

    def __init__(self, engine: wasmtime.Engine, settings: str) -> None:
        self.engine = engine
        self.settings = settings
        self._memory: dict[str, wasmtime.Module] = {}
        self._lock = threading.Lock()
        #: How the last `get` was served: "memory", "disk" or "compiled" (for benchmarks).
        self.last_source = ""

    def key(self, module_sha256: str) -> str:
        material = "\n".join((module_sha256, self.settings, wasmtime_version(), platform.machine()))
        return hashlib.sha256(material.encode("utf-8")).hexdigest()

    def get(self, wasm: bytes, module_sha256: str, *, memory: bool = True) -> wasmtime.Module:
        """The compiled module for `wasm`; raises wasmtime.WasmtimeError if it is invalid."""
        key = self.key(module_sha256)
        with self._lock:
            hit = self._memory.get(key) if memory else None
        if hit is not None:
            self.last_source = "memory"
            return hit
        directory = cache_dir()
        path = directory / f"{key}.cwasm" if directory is not None else None
        module = _read(self.engine, path) if path is not None else None
        if module is not None:
            self.last_source = "disk"
        else:
            module = wasmtime.Module(self.engine, wasm)
            self.last_source = "compiled"
            if path is not None:
                _write(path, bytes(module.serialize()))
        with self._lock:
            self._memory[key] = module
        return module

    def forget(self) -> None:
        """Drop the in-process modules (the disk cache stays)."""
        with self._lock:
            self._memory.clear()


def _read(engine: wasmtime.Engine, path: Path) -> wasmtime.Module | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(_MAGIC) + _HASH_LEN
    if not data.startswith(_MAGIC) or len(data) < head:
        return None
    payload = data[head:]
    if hashlib.sha256(payload).digest() != data[len(_MAGIC) : head]:
        return None
    try:
        return wasmtime.Module.deserialize(engine, payload)
    except wasmtime.WasmtimeError:
        return None  # written by another engine build: recompile and replace


def _write(path: Path, payload: bytes) -> None:
    """Best effort: a cache that cannot be written only costs a compile next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".cwasm")
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + hashlib.sha256(payload).digest() + payload)
        os.replace(tmp, path)
    except OSError:
        return
