"""`aobc serve`: the HTTP control plane over the embedded store or the distributed runtime.

    aobc serve --store DIR --tokens tokens.toml [--host 127.0.0.1] [--port 8080]
    aobc serve --postgres-url URL --s3-url URL --tokens tokens.toml   # or $AOBC_*_URL
    aobc serve --no-auth                       # local use only: every caller may do anything
    aobc serve token add --tokens tokens.toml --subject alice --role operator
    aobc serve token hash < token.txt          # the hash line for a token you already have

The server prints `aobc serve: listening on http://HOST:PORT` on stderr once it accepts
connections (with `--port 0`, the port it picked), then serves until SIGINT or SIGTERM,
after which the runs it drove stay resumable: the next `aobc serve` on the store carries
them on.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

from aobc import errorcodes as ec
from aobc.cli.common import Reporter, add_policy_flag, policy_from
from aobc.cli.session import add_store_flag, durable, store_dir
from aobc.diagnostics import Diagnostic
from aobc.errors import AobcError


def register(p: argparse.ArgumentParser) -> None:
    from aobc.runtime.stores.config import StoreConfig

    add_store_flag(p)
    StoreConfig.add_arguments(p)  # the distributed runtime's stores, instead of --store
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (0: pick a free one)")
    p.add_argument("--tokens", metavar="FILE", help="bearer tokens file (TOML or JSON, hashed)")
    p.add_argument(
        "--no-auth",
        action="store_true",
        help="accept every request as the local operator (loopback hosts only)",
    )
    add_policy_flag(p)
    p.add_argument("--mode", choices=("full", "fast"), default="full", help="run log mode")
    p.add_argument(
        "--path", action="append", default=[], metavar="DIR", help="also import functions from DIR"
    )
    p.add_argument("--secrets", metavar="FILE", help="secrets for HTTP `auth` (JSON or TOML)")
    p.add_argument(
        "--agent-script", metavar="FILE", help='answers for agents with provider "scripted"'
    )
    p.add_argument(
        "--review-agent",
        choices=("effectful", "all", "none"),
        default="effectful",
        help="agent patches that wait for an approver (default: those adding effectful nodes)",
    )
    p.add_argument(
        "--review-human", action="store_true", help="human patches wait for an approver too"
    )
    p.add_argument("--max-active", type=int, default=64, help="runs driven at once; more queue")
    p.add_argument("--sse-buffer", type=int, default=1024, help="events buffered per SSE client")
    p.add_argument("--heartbeat", type=float, default=15.0, help="seconds between SSE heartbeats")
    p.add_argument(
        "--stall",
        type=float,
        default=30.0,
        help="seconds before a client that reads nothing is cut",
    )
    p.add_argument(
        "--socket-sndbuf",
        type=int,
        metavar="BYTES",
        help="kernel send buffer per connection (default: the OS autotunes it); smaller makes "
        "clients that stop reading show up sooner",
    )
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="warning")
    p.add_argument("--access-log", action="store_true", help="log every request")
    sub = p.add_subparsers(dest="serve_command", metavar="token")
    token = sub.add_parser("token", help="make and hash API tokens")
    tsub = token.add_subparsers(dest="token_command", metavar="add|hash", required=True)
    add = tsub.add_parser("add", help="make a token, append its hash to the tokens file")
    add.add_argument("--tokens", dest="file", required=True, metavar="FILE")
    add.add_argument("--subject", required=True, help="who the token is (recorded on decisions)")
    add.add_argument(
        "--role",
        dest="roles",
        action="append",
        required=True,
        choices=("viewer", "operator", "approver", "agent"),
    )
    add.add_argument("--namespace", dest="namespaces", action="append", metavar="NS")
    add.add_argument("--group", dest="groups", action="append", metavar="GROUP")
    add.add_argument("--node", help="agent tokens: author patches as this agent node")
    add.add_argument("--patches-per-run", type=int, help="agent tokens: patches per run")
    add.add_argument("--ops-per-patch", type=int, help="agent tokens: operations per patch")
    add.add_argument("--json", action="store_true")
    h = tsub.add_parser("hash", help="print the hash of a token read from stdin")
    h.add_argument("token", nargs="?", help="the token (default: read stdin)")


def _usage(message: str) -> AobcError:
    return AobcError(Diagnostic.error(ec.USAGE, message))


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    if args.serve_command == "token":
        return _token(args)
    return _serve(args)


def _token(args: argparse.Namespace) -> int:
    from aobc.api.auth import entry_toml, load_tokens, new_token, token_hash

    if args.token_command == "hash":
        token = (args.token or sys.stdin.readline()).strip()
        if not token:
            raise _usage("no token given")
        sys.stdout.write(token_hash(token) + "\n")
        return 0
    token = new_token()
    budget = {
        k: v
        for k, v in (
            ("patches_per_run", args.patches_per_run),
            ("ops_per_patch", args.ops_per_patch),
        )
        if v is not None
    }
    entry = entry_toml(
        args.subject,
        args.roles,
        token_hash(token),
        namespaces=args.namespaces,
        groups=args.groups,
        node=args.node,
        budget=budget or None,
    )
    path = Path(args.file)
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    sep = "\n" if before and not before.endswith("\n\n") else ""
    path.write_text(before + sep + entry, encoding="utf-8")
    try:
        load_tokens(path)  # the file must still load, or the server would refuse it
    except AobcError:
        path.write_text(before, encoding="utf-8")
        raise
    if args.json:
        sys.stdout.write(json.dumps({"token": token, "hash": token_hash(token)}) + "\n")
    else:
        sys.stdout.write(token + "\n")
        sys.stderr.write(f"added {args.subject} ({', '.join(args.roles)}) to {path}; "
                         "the token is shown only this once\n")  # fmt: skip
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _options(args: argparse.Namespace) -> Any:
    from aobc.api.embedded import EmbeddedOptions
    from aobc.runtime.providers import ProviderConfig
    from aobc.runtime.review import ReviewPolicy

    providers = ProviderConfig.from_env()
    if args.agent_script:
        providers = providers.with_script(args.agent_script)
    secrets = None
    if args.secrets:
        from aobc.runtime.executors.http import Secrets

        secrets = Secrets(args.secrets)
    return EmbeddedOptions(
        store=store_dir(args),
        durable=durable(args),
        policy=policy_from(args),
        review=ReviewPolicy(agent=args.review_agent, human=args.review_human),
        mode=args.mode,
        search_path=[str(Path(p).resolve()) for p in args.path],
        providers=providers,
        secrets=secrets,
        max_active=args.max_active,
        sse_buffer=args.sse_buffer,
    )


def _distributed(args: argparse.Namespace) -> Any:
    """The StoreConfig to serve the distributed runtime from, or None for the embedded store.

    Distributed when `--store` is a postgres:// URL, or a store URL flag is given, or (no
    `--store`) $AOBC_POSTGRES_URL is set. It needs Postgres and S3; Kafka and Redis are the
    coordinators' and workers' business (this server publishes no job, runs no node)."""
    from aobc.cli.cluster import store_errors
    from aobc.runtime.stores.config import SOURCES, StoreConfig

    store = args.store or ""
    flags = any(getattr(args, f"{s}_url", None) for s in SOURCES)
    if "://" in store:
        if store.split("://", 1)[0] not in ("postgres", "postgresql"):
            raise AobcError(
                Diagnostic.error(
                    ec.STORE_CONFIG,
                    f"--store {store.split('://', 1)[0]}:// is not a store: give --store DIR, "
                    "or the distributed stores' URLs (--postgres-url and --s3-url)",
                )
            )
        args.postgres_url = args.postgres_url or store
    elif store and flags:
        raise _usage("give --store DIR or the distributed stores' URLs, not both")
    elif store:
        return None
    config = StoreConfig.from_args(args)
    if config.postgres is None and not flags:
        return None
    with store_errors():
        config.require("postgres", "s3")
    return config


def _distributed_options(args: argparse.Namespace, config: Any) -> Any:
    from aobc.api.distributed import DistributedOptions
    from aobc.runtime.review import ReviewPolicy

    return DistributedOptions(
        config=config,
        policy=policy_from(args),
        review=ReviewPolicy(agent=args.review_agent, human=args.review_human),
        mode=args.mode,
        search_path=[str(Path(p).resolve()) for p in args.path],
        sse_buffer=args.sse_buffer,
    )


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import socket

    import uvicorn

    from aobc.api.app import create_app
    from aobc.api.auth import TokenStore
    from aobc.api.backend import ControlPlane
    from aobc.api.embedded import EmbeddedControlPlane
    from aobc.api.settings import Settings

    if args.tokens and args.no_auth:
        raise _usage("give --tokens or --no-auth, not both")
    if not args.tokens and not args.no_auth:
        raise _usage("give --tokens FILE (see `aobc serve token add`), or --no-auth for local use")
    if args.no_auth and not _loopback(args.host):
        raise _usage(f"--no-auth serves only loopback addresses, not {args.host}")
    config = _distributed(args)  # before listening: a bad store URL is refused first
    tokens = TokenStore(args.tokens) if args.tokens else None
    settings = Settings(tokens=tokens, heartbeat=args.heartbeat, stall=args.stall)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it a response's separate writes wait out the client's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.socket_sndbuf:  # accepted connections inherit it from the listening socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, args.socket_sndbuf)
    try:
        sock.bind((args.host, args.port))
    except OSError as err:
        sock.close()
        raise AobcError(
            Diagnostic.error(
                ec.IO_ERROR, f"cannot listen on {args.host}:{args.port}: {err.strerror}"
            )
        ) from None
    cp: ControlPlane
    if config is None:
        cp = EmbeddedControlPlane(_options(args))
    else:
        from aobc.api.distributed import DistributedControlPlane
        from aobc.cli.cluster import store_errors

        with store_errors():
            cp = DistributedControlPlane(_distributed_options(args, config))
    app = create_app(cp, settings)
    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        access_log=args.access_log,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if family == socket.AF_INET6 else host

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            sys.stderr.write(f"aobc serve: listening on http://{shown}:{port}\n")
            sys.stderr.flush()
        await task

    asyncio.run(main())
    return 0
