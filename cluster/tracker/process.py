"""``python -m cluster.tracker --conf FILE``: run a tracker in the foreground.

Prints ``tracker ready on HOST:PORT`` once listening; logs go to stderr.  SIGTERM or SIGINT stops
it gracefully (requests in progress finish, the state is saved) with exit code 0, also when it
arrives while the tracker starts (it then stops without the ready line); a configuration
that cannot be used exits with code 2 and a one-line error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from cluster.errors import ConfigError
from cluster.runtime import StopSignals, run

from .config import TrackerConfig, load_tracker_config
from .server import TrackerServer

log = logging.getLogger("cluster.tracker")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trunkstore tracker", description="Run a trunkstore tracker.")
    parser.add_argument("--conf", required=True, help="tracker.conf (FastDFS key names)")
    parser.add_argument("--port", type=int, help="port to listen on (overrides the conf; 0: any free port)")
    parser.add_argument("--bind", help="address to listen on (overrides bind_addr)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    return parser


def main(argv: list[str] | None = None, early_stop: Sequence[int] = ()) -> int:
    """Run a tracker until SIGTERM/SIGINT; returns the process exit code."""
    with StopSignals(early_stop) as signals:
        return _main(argv, signals)


def _main(argv: list[str] | None, signals: StopSignals) -> int:
    args = _parser().parse_args(argv)
    level = logging.getLevelName(str(args.log_level).upper())
    if not isinstance(level, int):
        print(f"tracker: bad --log-level {args.log_level!r}", file=sys.stderr)
        return 2
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config, warnings = load_tracker_config(args.conf, port=args.port, bind_addr=args.bind)
        Path(config.base_path).mkdir(parents=True, exist_ok=True)
    except ConfigError as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"tracker: cannot create base_path: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        log.warning("%s", warning)
    if signals.requested:
        return 0
    try:
        return run(serve(config, signals))
    except ConfigError as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 2


async def serve(config: TrackerConfig, signals: StopSignals) -> int:
    """Serve until a stop signal arrives, then stop gracefully."""
    stop = signals.attach()
    try:
        server = TrackerServer(config)
        port = await server.start()
        if not stop.is_set():
            print(f"tracker ready on {config.listen_host}:{port}", flush=True)
            log.info("tracker listening on %s:%d, state in %s", config.listen_host, port, config.state_path)
            await stop.wait()
        log.info("stopping")
        await server.stop()
        return 0
    finally:
        signals.detach()
