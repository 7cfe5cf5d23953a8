"""``python -m cluster.storage --conf FILE``: run a storage server in the foreground.

Prints ``storage ready on HOST:PORT`` once it listens and its store is open (joining the trackers
goes on in the background), logs to stderr, and stops gracefully on SIGTERM or SIGINT (requests in
progress finish, the store is closed), exiting 0; a signal that arrives while it starts stops it as
soon as the store is open, without the ready line.  A bad configuration exits 2 with a one-line error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from cluster.errors import ConfigError
from cluster.runtime import StopSignals, run
from trunkstore import TrunkstoreError
from trunkstore.errors import ConfigError as StoreConfigError

from .config import StorageConfig
from .server import StorageServer

log = logging.getLogger("cluster.storage")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="trunkstore storage", description="Run a trunkstore storage server.")
    parser.add_argument("--conf", required=True, help="FastDFS-style storage.conf")
    parser.add_argument("--port", type=int, help="port to listen on (overrides the conf; 0: any free port)")
    parser.add_argument("--bind", help="address to listen on (overrides bind_addr)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, early_stop: Sequence[int] = ()) -> int:
    with StopSignals(early_stop) as signals:
        return _main(argv, signals)


def _main(argv: list[str] | None, signals: StopSignals) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    overrides: dict[str, object] = {}
    if args.port is not None:
        overrides["port"] = args.port
    if args.bind is not None:
        overrides["bind_addr"] = args.bind
    try:
        config, warnings = StorageConfig.load(args.conf, **overrides)
    except ConfigError as exc:
        print(f"storage: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        log.warning("%s", warning)
    if config.disabled:
        print(f"storage: {args.conf} is disabled (disabled = true)", file=sys.stderr)
        return 2
    if signals.requested:
        return 0
    return run(serve(config, signals))


async def serve(config: StorageConfig, signals: StopSignals) -> int:
    stopping = signals.attach()
    try:
        return await _serve(config, stopping)
    finally:
        signals.detach()


async def _serve(config: StorageConfig, stopping: asyncio.Event) -> int:
    server = StorageServer(config)
    try:
        await server.start()
    except (ConfigError, StoreConfigError) as exc:
        print(f"storage: {exc}", file=sys.stderr)
        await server.stop()
        return 2
    except (TrunkstoreError, OSError) as exc:
        print(f"storage: cannot start: {exc}", file=sys.stderr)
        await server.stop()
        return 1
    if not stopping.is_set():
        print(f"storage ready on {server.host}:{server.port}", flush=True)
        await stopping.wait()
    log.info("stopping")
    try:
        await server.stop()
    except Exception:
        log.exception("the store did not close cleanly")
        return 1
    log.info("stopped")
    return 0
