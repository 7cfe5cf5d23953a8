"""The ``trunkstore`` command: servers, the bundled cluster, file transfers and the monitor.

::

    trunkstore tracker --conf tracker.conf          run a tracker (FastDFS tracker.conf keys)
    trunkstore storage --conf storage.conf          run a storage server (FastDFS storage.conf keys)
    trunkstore cluster up [--dir DIR] [--trackers N] [--storages M] [--groups G] [--detach]
    trunkstore cluster down [--dir DIR]             stop a detached bundled cluster
    trunkstore cluster status [--dir DIR]
    trunkstore upload FILE [--ext EXT] [--group G] [--appender] [--meta K=V ...]
    trunkstore download FILE_ID [DEST] [--offset N] [--length N]
    trunkstore delete FILE_ID ...
    trunkstore info FILE_ID
    trunkstore meta FILE_ID [K=V ...] [--merge]     show, or set (replace / merge) metadata
    trunkstore append FILE_ID FILE
    trunkstore monitor [--group G]
    trunkstore delete-storage GROUP STORAGE         remove a stopped storage (ID, IP or IP:PORT)

The file commands find the trackers in ``--tracker`` options, a FastDFS ``client.conf`` given with
``--conf``, the ``TRUNKSTORE_TRACKER`` environment variable, or the bundled cluster in ``--dir``,
in that order.  Exit codes: 0 success, 1 a request failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cluster.errors import ClusterError, ConfigError

DEFAULT_DIR = ".cluster"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # The servers parse their own options, so that `trunkstore tracker ...` and
    # `python -m cluster.tracker ...` are one and the same program.
    if args and args[0] in ("tracker", "storage"):
        return _run_server(args[0], args[1:])
    parser = build_parser()
    options = parser.parse_args(args)
    if not getattr(options, "handler", None):
        parser.print_help()
        return 2
    try:
        code: int = options.handler(options)
        return code
    except ConfigError as exc:
        print(f"trunkstore: {exc}", file=sys.stderr)
        return 2
    except ClusterError as exc:
        print(f"trunkstore: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("trunkstore: interrupted", file=sys.stderr)
        return 130


def _run_server(role: str, argv: list[str]) -> int:
    if role == "tracker":
        from cluster.tracker import main as tracker_main

        return tracker_main(argv)
    from cluster.storage import main as storage_main

    return storage_main(argv)


def build_parser() -> argparse.ArgumentParser:
    from cluster.cli.commands import add_cluster_commands, add_file_commands

    parser = argparse.ArgumentParser(
        prog="trunkstore",
        description="trunkstore: a FastDFS-compatible small-file store. "
        "`trunkstore tracker|storage --conf FILE` runs a server.",
    )
    sub = parser.add_subparsers(metavar="command")
    sub.add_parser("tracker", help="run a tracker: trunkstore tracker --conf tracker.conf")
    sub.add_parser("storage", help="run a storage server: trunkstore storage --conf storage.conf")
    add_cluster_commands(sub)
    add_file_commands(sub)
    return parser
