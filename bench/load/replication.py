"""``python -m bench.load.replication``: how fast a group's storages copy each other's uploads.

Starts a throwaway tracker and two storages of one group (each with its numeric storage ID and its
own trunk containers, as ``trunkstore cluster up`` configures them), uploads N files of S bytes to
the first storage over one connection, and measures

* the upload rate with replication running (the binlog write and the sender share the source's CPU),
* when the second storage has the last file (a peer applies one source's records in order, so the
  last one there means all are there; every file is then checked byte for byte): replicated files/s
  from the first upload, and the lag after the last upload was acknowledged.

Medians over ``--repeat`` runs, each on a fresh pair.  JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from cluster.protocol import DownloadFileRequest, UploadFileRequest

from .spawn import SYNC_MODES, LocalCluster
from .wire import ReplyError, Wire, parse_address

GROUP = "group1"
POLL = 0.002


def _upload_all(wire: Wire, payloads: list[bytes]) -> list[str]:
    names = []
    for data in payloads:
        body = wire.call(UploadFileRequest(0xFF, len(data), "bin").encode(data), "upload")
        names.append(bytes(body[16:]).decode("ascii"))
    return names


def _has(wire: Wire, name: str) -> bytes | None:
    try:
        return bytes(wire.call(DownloadFileRequest(GROUP, name).encode(), "download"))
    except ReplyError as exc:
        if exc.status == 2:  # ENOENT: not there yet
            return None
        raise


def _until_copies_possible(wire: Wire, timeout: float = 30.0) -> None:
    """With ack_replicas, uploads are refused (EBUSY) until the source is connected to its peer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _upload_all(wire, [b"warm-up"])
            return
        except ReplyError as exc:
            if exc.status != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def run_once(count: int, size: int, sync_mode: str, base: str | None, ack_replicas: int = 0) -> dict[str, float]:
    payloads = [os.urandom(size) for _ in range(count)]
    conf = {"ack_replicas": str(ack_replicas)} if ack_replicas else {}
    with LocalCluster(sync_mode=sync_mode, storages=2, base=base, storage_conf=conf) as cluster:
        source = Wire(parse_address(cluster.storages[0]), 30.0)
        replica = Wire(parse_address(cluster.storages[1]), 30.0)
        try:
            if ack_replicas:
                _until_copies_possible(source)
            started = time.perf_counter()
            names = _upload_all(source, payloads)
            uploaded = time.perf_counter()
            while _has(replica, names[-1]) is None:
                time.sleep(POLL)
            replicated = time.perf_counter()
            missing = [name for name, data in zip(names, payloads, strict=True) if _has(replica, name) != data]
        finally:
            source.close()
            replica.close()
    if missing:
        raise RuntimeError(f"{len(missing)} of {count} files differ or are missing on the replica")
    return {
        "uploads_per_s": count / (uploaded - started),
        "replicated_per_s": count / (replicated - started),
        "lag_s": replicated - uploaded,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load.replication", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=20000, help="files uploaded per run")
    parser.add_argument("-s", "--size", type=int, default=4096, help="bytes per file")
    parser.add_argument("--repeat", type=int, default=3, help="runs, each on a fresh pair of storages")
    parser.add_argument("--sync-mode", choices=SYNC_MODES, default="none", help="the storages' sync_mode")
    parser.add_argument(
        "--ack-replicas", type=int, default=0, help="the source acknowledges an upload once this many peers hold it"
    )
    parser.add_argument("--spawn-dir", default=None, help="where the throwaway cluster lives (default: $TMPDIR)")
    parser.add_argument("--json", default=None, help="write the runs and medians to this file")
    options = parser.parse_args(argv)
    if options.count < 1 or options.size < 0 or options.repeat < 1:
        parser.error("--count and --repeat must be positive, --size not negative")
    runs = []
    for number in range(options.repeat):
        run = run_once(options.count, options.size, options.sync_mode, options.spawn_dir, options.ack_replicas)
        runs.append(run)
        print(
            f"run {number + 1}: {run['uploads_per_s']:,.0f} uploads/s, replicated {run['replicated_per_s']:,.0f}"
            f" files/s, lag after the last upload {run['lag_s'] * 1000:.0f} ms",
            flush=True,
        )
    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(
        f"median of {len(runs)}: {medians['uploads_per_s']:,.0f} uploads/s to the source, "
        f"{medians['replicated_per_s']:,.0f} files/s on the replica, lag {medians['lag_s'] * 1000:.0f} ms "
        f"({options.count} x {options.size} B, sync_mode {options.sync_mode}, ack_replicas {options.ack_replicas})"
    )
    if options.json:
        record: dict[str, Any] = {
            "command": " ".join(["python -m bench.load.replication", *(argv or sys.argv[1:])]),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
            "count": options.count,
            "size": options.size,
            "sync_mode": options.sync_mode,
            "ack_replicas": options.ack_replicas,
            "runs": runs,
            "medians": medians,
        }
        with open(options.json, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
