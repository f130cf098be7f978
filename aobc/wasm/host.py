"""Loading and calling pass plugins on wasmtime, inside limits, without ever crashing.

One engine per process, with fuel metering and epoch interruption on. Every call gets a
fresh `Store` (so no state survives between calls, and a plugin cannot see another's memory)
with its own limits:

- fuel, a deterministic budget of work: the same input always stops at the same place;
- an epoch deadline for wall time, driven by one ticker thread that runs only during calls;
- a cap on linear memory (growing past it fails; a module declaring more fails to start);
- a cap on the output's size, checked before the host reads a byte of it.

Every way a call can go wrong ends as a `PluginFailure` with a `wasm-*` code.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

import wasmtime

from aobc import errorcodes as ec
from aobc.wasm.abi import (
    ABI_NAME,
    ABI_VERSION,
    OPTIONAL_EXPORTS,
    REQUIRED_EXPORTS,
    Manifest,
    PluginFailure,
    default_name,
    parse_manifest,
    unpack,
)
from aobc.wasm.cache import ModuleCache

#: What the engine is configured with; part of every cache key.
ENGINE_SETTINGS: Final = "consume_fuel=1;epoch_interruption=1;cranelift_opt_level=speed"
TICK_SECONDS: Final = 0.01
_PAGE: Final = 65536


@dataclass(frozen=True, slots=True)
class Limits:
    """What one call may use. `fuel=0` means no fuel limit (the deadline still holds)."""

    fuel: int = 20_000_000_000
    timeout_ms: int = 10_000
    memory_mb: int = 512
    output_kb: int = 65_536

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb * 1024 * 1024

    @property
    def output_bytes(self) -> int:
        return self.output_kb * 1024


class _Ticker:
    """Advances the engine's epoch every TICK_SECONDS while at least one call is running."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self.engine = engine
        self.active = 0
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> None:
        with self.cond:
            self.active += 1
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._loop, name="aobc-wasm-epoch", daemon=True
                )
                self.thread.start()
            self.cond.notify()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self.cond:
            self.active -= 1

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.active:
                    self.cond.wait()
            time.sleep(TICK_SECONDS)
            self.engine.increment_epoch()


class _Runtime:
    """The process's engine, module cache and ticker, made on first use."""

    _instance: _Runtime | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        config.cranelift_opt_level = "speed"
        self.engine = wasmtime.Engine(config)
        self.cache = ModuleCache(self.engine, ENGINE_SETTINGS)
        self.ticker = _Ticker(self.engine)

    @classmethod
    def get(cls) -> _Runtime:
        with cls._lock:
            if cls._instance is None:
                cls._instance = _Runtime()
            return cls._instance


def runtime_cache() -> ModuleCache:
    """The process's module cache (benchmarks and tests look at `last_source`)."""
    return _Runtime.get().cache


def _reason(err: Exception) -> str:
    """The cause line of a wasmtime error, without its backtrace."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1].removeprefix("wasm trap: ") if lines else type(err).__name__


def _type_name(t: object) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    if isinstance(t, wasmtime.FuncType):
        return tuple(str(p) for p in t.params), tuple(str(r) for r in t.results)
    return None


class Plugin:
    """A compiled, checked plugin. `call` runs it once, in a fresh store."""

    def __init__(self, path: Path, wasm: bytes, module: wasmtime.Module) -> None:
        self.path = path
        self.sha256 = hashlib.sha256(wasm).hexdigest()
        self.module = module
        self.has_meta = False
        self._check_exports()
        self.manifest = self._read_manifest()

    @property
    def name(self) -> str:
        return self.manifest.name

    def _check_exports(self) -> None:
        imports = [f"{i.module}.{i.name}" for i in self.module.imports]
        if imports:
            raise PluginFailure(
                ec.WASM_ABI,
                f"it imports {', '.join(imports)}; an {ABI_NAME} module imports nothing",
            )
        found = {e.name: e.type for e in self.module.exports}
        if not isinstance(found.get("memory"), wasmtime.MemoryType):
            raise PluginFailure(ec.WASM_ABI, 'it does not export its memory as "memory"')
        for name, sig in {**REQUIRED_EXPORTS, **OPTIONAL_EXPORTS}.items():
            if name not in found:
                if name in REQUIRED_EXPORTS:
                    raise PluginFailure(ec.WASM_ABI, f'it does not export "{name}"')
                continue
            if _type_name(found[name]) != sig:
                want = f"({', '.join(sig[0])}) -> {', '.join(sig[1])}"
                raise PluginFailure(ec.WASM_ABI, f'its export "{name}" is not a function {want}')
        self.has_meta = "meta" in found

    def _read_manifest(self) -> Manifest:
        fallback = default_name(self.path.stem)
        with _Call(self, Limits(fuel=1_000_000_000, timeout_ms=5_000)) as call:
            version = call.func("abi_version")()
            if version != ABI_VERSION:
                raise PluginFailure(
                    ec.WASM_ABI,
                    f"it speaks ABI version {version}, but this host speaks {ABI_NAME} "
                    f"(abi_version() = {ABI_VERSION}); rebuild it against {ABI_NAME}",
                )
            if not self.has_meta:
                return Manifest(name=fallback)
            raw = call.result(call.func("meta")(), "meta")
        return parse_manifest(raw, fallback)

    def call(self, data: bytes, limits: Limits) -> bytes:
        """Run `run(input)` once; the output bytes, or PluginFailure."""
        with _Call(self, limits) as call:
            ptr = call.func("alloc")(len(data))
            if not isinstance(ptr, int) or ptr <= 0 or ptr + len(data) > call.memory_size():
                if call.near_cap(len(data)):
                    raise PluginFailure(
                        ec.WASM_MEMORY,
                        f"it could not take its {len(data):,}-byte input within the "
                        f"{limits.memory_mb} MiB memory cap",
                    )
                raise PluginFailure(ec.WASM_ABI, f"alloc({len(data)}) returned {ptr}")
            call.memory.write(call.store, data, ptr)
            return call.result(call.func("run")(ptr, len(data)), "run")


class _Call:
    """One instantiation in a fresh store; maps every wasmtime failure to a PluginFailure."""

    def __init__(self, plugin: Plugin, limits: Limits) -> None:
        rt = _Runtime.get()
        self.plugin = plugin
        self.limits = limits
        self.ticker = rt.ticker
        self.store = wasmtime.Store(rt.engine)
        self.store.set_fuel(limits.fuel if limits.fuel > 0 else (1 << 64) - 1)
        self.store.set_limits(memory_size=limits.memory_bytes)
        self.store.set_epoch_deadline(math.ceil(limits.timeout_ms / 1000 / TICK_SECONDS) + 1)
        self.exports: dict[str, object] = {}
        self.memory: wasmtime.Memory

    def __enter__(self) -> _Call:
        self.ticker.__enter__()
        try:
            instance = wasmtime.Instance(self.store, self.plugin.module, [])
        except (wasmtime.Trap, wasmtime.WasmtimeError) as err:
            self.ticker.__exit__(None, None, None)
            raise self._failure(err, starting=True) from None
        self.exports = dict(instance.exports(self.store))
        memory = self.exports["memory"]
        assert isinstance(memory, wasmtime.Memory)  # checked when the plugin was loaded
        self.memory = memory
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.ticker.__exit__(t, e, tb)
        if isinstance(e, wasmtime.Trap | wasmtime.WasmtimeError):
            raise self._failure(e, starting=False) from None

    def func(self, name: str) -> Callable[..., object]:
        """An export, callable without its store."""
        f = self.exports[name]
        assert isinstance(f, wasmtime.Func)  # checked when the plugin was loaded
        return functools.partial(f, self.store)

    def memory_size(self) -> int:
        return self.memory.data_len(self.store)

    def near_cap(self, extra: int = 0) -> bool:
        return self.memory_size() + max(extra, _PAGE) > self.limits.memory_bytes

    def result(self, packed: object, what: str) -> bytes:
        """The bytes a packed (err, ptr, len) result points at; raises on err."""
        if not isinstance(packed, int):
            raise PluginFailure(ec.WASM_ABI, f"{what}() returned {packed!r}, not an i64")
        err, ptr, length = unpack(packed)
        cap = self.limits.output_bytes
        if length > cap:
            raise PluginFailure(
                ec.WASM_OUTPUT,
                f"its {what}() output is {length:,} bytes; the cap is {cap:,} "
                f"(output-kb={self.limits.output_kb})",
            )
        if ptr + length > self.memory_size():
            raise PluginFailure(
                ec.WASM_OUTPUT,
                f"its {what}() output ({length:,} bytes at {ptr}) lies outside its memory",
            )
        data = bytes(self.memory.read(self.store, ptr, ptr + length))
        if err:
            message = data.decode("utf-8", "replace").strip() or "no message"
            if self.near_cap():
                raise PluginFailure(
                    ec.WASM_MEMORY,
                    f"it ran out of memory under the {self.limits.memory_mb} MiB cap ({message})",
                )
            raise PluginFailure(ec.WASM_ERROR, f"it reported an error: {message}")
        return data

    def _failure(self, err: Exception, *, starting: bool) -> PluginFailure:
        code = err.trap_code if isinstance(err, wasmtime.Trap) else None
        limits = self.limits
        if code is wasmtime.TrapCode.OUT_OF_FUEL:
            return PluginFailure(
                ec.WASM_FUEL, f"it ran out of fuel (budget {limits.fuel:,}; raise it with fuel=N)"
            )
        if code is wasmtime.TrapCode.INTERRUPT:
            return PluginFailure(
                ec.WASM_TIMEOUT,
                f"it ran past its deadline of {limits.timeout_ms:,} ms (timeout-ms=N)",
            )
        reason = _reason(err)
        if starting and "memory" in reason and "limit" in reason:
            return PluginFailure(
                ec.WASM_MEMORY, f"it needs more than the {limits.memory_mb} MiB cap: {reason}"
            )
        if not starting and self.near_cap():
            return PluginFailure(
                ec.WASM_MEMORY,
                f"it trapped after using its {limits.memory_mb} MiB memory cap: {reason}",
            )
        return PluginFailure(ec.WASM_TRAP, f"it trapped: {reason}")


_PLUGINS: dict[tuple[str, str], Plugin] = {}
_PLUGINS_LOCK: Final = threading.Lock()


def load_plugin(path: str | Path) -> Plugin:
    """Read, compile (or fetch from the cache) and check a plugin; raises PluginFailure.

    `path` may be a binary module or WAT text.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise PluginFailure(ec.WASM_LOAD, f"cannot read it: {err.strerror or err}") from None
    if not raw.startswith(b"\0asm"):
        try:
            raw = bytes(wasmtime.wat2wasm(raw.decode("utf-8")))
        except (UnicodeDecodeError, wasmtime.WasmtimeError) as err:
            raise PluginFailure(
                ec.WASM_LOAD, f"it is neither a WebAssembly module nor WAT text: {_reason(err)}"
            ) from None
    sha = hashlib.sha256(raw).hexdigest()
    key = (str(p.resolve()), sha)
    with _PLUGINS_LOCK:
        hit = _PLUGINS.get(key)
    if hit is not None:
        return hit
    try:
        module = _Runtime.get().cache.get(raw, sha)
    except wasmtime.WasmtimeError as err:
        raise PluginFailure(
            ec.WASM_LOAD, f"it is not a valid WebAssembly module: {_reason(err)}"
        ) from None
    plugin = Plugin(p, raw, module)
    with _PLUGINS_LOCK:
        _PLUGINS[key] = plugin
    return plugin


def forget_plugins() -> None:
    """Drop loaded plugins and in-memory modules (to measure a cold start)."""
    with _PLUGINS_LOCK:
        _PLUGINS.clear()
    _Runtime.get().cache.forget()
