"""``make run``: start the bundled cluster, send a sample through it, and show how to use it.

The cluster (one tracker and a group of two storages that replicate each other, on 127.0.0.1) runs
detached in ``.cluster/`` and stays up afterwards, so that the commands printed at the end can be
tried at once; a cluster already running there is reused.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
from pathlib import Path

from cluster.cli import DEFAULT_DIR, bundle
from cluster.client import Client
from cluster.errors import ClusterError
from cluster.protocol import HEADER_SIZE, DownloadFileRequest, decode_header

READY_TIMEOUT = 30.0
#: Storages of the demo's one group: enough to show replication.
STORAGES = 2


def _held_by(storage: bundle.ServerRecord, file_id: str) -> bool:
    """Whether ``storage`` has the file (asked directly, not through the tracker)."""
    group, filename = file_id.split("/", 1)
    with socket.create_connection((storage.host, storage.port), timeout=5) as sock:
        sock.sendall(DownloadFileRequest(group, filename).encode())
        header = decode_header(_recv_exact(sock, HEADER_SIZE))
        _recv_exact(sock, header.pkg_len)
    return header.status == 0


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        piece = sock.recv(count - len(data))
        if not piece:
            raise ConnectionError("the storage closed the connection")
        data += piece
    return bytes(data)


def _wait_replicated(running: bundle.Bundle, file_id: str) -> list[str]:
    """The storages of the file's group, once each holds it."""
    group = file_id.split("/", 1)[0]
    members = [s for s in running.storages if s.group == group]
    deadline = time.monotonic() + READY_TIMEOUT
    while not all(_held_by(storage, file_id) for storage in members):
        if time.monotonic() > deadline:
            raise ClusterError(f"{file_id} did not reach every storage of {group} in {READY_TIMEOUT:.0f} s")
        time.sleep(0.05)
    return [s.address for s in members]


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start(directory: Path) -> bundle.Bundle:
    existing = bundle.Bundle.load(directory.resolve())
    if existing is not None and len(existing.running()) == len(existing.servers):
        print(f"reusing the cluster already running in {directory}")
        return existing
    if existing is not None:
        bundle.stop(existing)
    # FastDFS's own ports when they are free, so that existing client configurations work unchanged.
    defaults = bundle.BundleSpec(directory=directory, storages=STORAGES)
    ports = [defaults.tracker_port, *range(defaults.storage_port, defaults.storage_port + STORAGES)]
    if all(_port_free(port) for port in ports):
        spec = defaults
    else:
        spec = bundle.BundleSpec(directory=directory, storages=STORAGES, tracker_port=0, storage_port=0)
    started = bundle.up(spec, detach=True)
    print(f"started a cluster in {directory}:")
    print("\n".join(bundle.describe(started)))
    return started


def _wait_writable(client: Client) -> None:
    """The storage needs a beat or two before the tracker offers it for uploads."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            client.query_store()
            return
        except ClusterError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main() -> int:
    directory = Path(os.environ.get("TRUNKSTORE_CLUSTER_DIR", DEFAULT_DIR))
    try:
        running = _start(directory)
    except ClusterError as exc:
        print(f"could not start the cluster: {exc}", file=sys.stderr)
        return 1
    trackers = [t.address for t in running.trackers]
    with Client(trackers) as client:
        _wait_writable(client)
        small = b"hello from trunkstore\n"
        small_id = client.upload(small, ext="txt", meta={"author": "demo"})
        assert client.download(small_id) == small
        big = os.urandom(3 << 20)
        big_id = client.upload(big, ext="bin")
        assert hashlib.sha256(client.download(big_id)).digest() == hashlib.sha256(big).digest()
        info = client.file_info(big_id)
        print()
        print(f"uploaded {len(small)} bytes  -> {small_id}  (kind: {client.file_info(small_id).kind})")
        print(f"uploaded {len(big) >> 20} MiB -> {big_id}  (kind: {info.kind}, crc32 0x{info.crc32:08x})")
        print(f"metadata of the small file: {client.get_meta(small_id)}")
        print("both downloaded back byte-exact")
        holders = _wait_replicated(running, small_id)
        print(f"the small file is on {len(holders)} storage(s) of its group: {', '.join(holders)}")
        client.delete(big_id)
        groups = client.list_groups()
    for group in groups:
        print(f"{group.group_name}: {group.storage_count} storage(s), {group.free_mb:,} MB free")
    tracker = trackers[0]
    print(
        f"""
The cluster keeps running (tracker {tracker}). Try, from this directory:

  .venv/bin/trunkstore upload README.md                 # prints the new file ID
  .venv/bin/trunkstore download {small_id} -
  .venv/bin/trunkstore info {small_id}
  .venv/bin/trunkstore meta {small_id}
  .venv/bin/trunkstore monitor

From Python:

  from cluster.client import Client
  with Client(["{tracker}"]) as client:
      file_id = client.upload(b"...", ext="jpg")
      data = client.download(file_id)

Any FastDFS client works too (tracker_server = {tracker}).
Stop the cluster with:  .venv/bin/trunkstore cluster down --dir {directory}"""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
