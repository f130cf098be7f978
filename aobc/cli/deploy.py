"""`aobc deploy FILE.aobir`: register a compiled workflow with the cluster; prints its hash.

The IR goes to the CAS (S3) and the `artifacts` table (Postgres), and into the Redis IR cache
when Redis is configured. `aobc start HASH` then starts runs of it. A workflow source (.aob,
.json) is compiled first, as `aobc run` would.
"""

from __future__ import annotations

import argparse
import sys

from aobc.cli.cluster import add_cluster_flags, store_config, store_errors
from aobc.cli.common import Reporter, add_patch_flags, add_policy_flag


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a compiled .aobir (or a workflow source to compile)")
    p.add_argument("--name", help="the artifact's name (default: the workflow's)")
    add_patch_flags(p)
    add_policy_flag(p)
    p.add_argument("-O", dest="opt", choices=("0", "1", "2"), help="optimization level")
    add_cluster_flags(p)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from aobc.backend.aobir import encode
    from aobc.cli.run import compile_ir
    from aobc.runtime.engine import Engine, Stores
    from aobc.runtime.stores.postgres import PostgresEventLog
    from aobc.runtime.stores.redis import IR, RedisCache
    from aobc.runtime.stores.s3 import S3CAS

    ir = compile_ir(args, reporter)
    config = store_config(args, "postgres", "s3")
    with store_errors():
        events = PostgresEventLog(config.postgres)
        cas = S3CAS(config.s3)
        try:
            digest = Engine(Stores(events, cas)).store_ir(ir, args.name or ir.name)
            if config.redis:
                cache = RedisCache(config.redis)
                cache.set(IR + digest, encode(ir))
                cache.close()
        finally:
            cas.close()
            events.close()
    sys.stdout.write(f"{digest}\n")
    return 0
