"""The subcommands of ``trunkstore``: argument parsing and the handler of each."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from cluster.cli import bundle, monitor
from cluster.cli.progress import ProgressBar
from cluster.errors import ClusterError, ConfigError

if TYPE_CHECKING:
    from cluster.client import Client, ClientConfig

ENV_TRACKER = "TRUNKSTORE_TRACKER"


# ---- the bundled cluster ----------------------------------------------------------------------------
def add_cluster_commands(sub: Any) -> None:
    cluster = sub.add_parser("cluster", help="start or stop the bundled cluster on 127.0.0.1")
    actions = cluster.add_subparsers(metavar="action")

    up = actions.add_parser("up", help="start trackers and storages, each its own process")
    _add_dir(up)
    up.add_argument("--trackers", type=int, default=1, metavar="N", help="trackers to start (default 1)")
    up.add_argument("--groups", type=int, default=1, metavar="G", help="groups (default 1)")
    up.add_argument("--storages", type=int, default=None, metavar="M", help="storages (default: one per group)")
    up.add_argument("--tracker-port", type=int, default=22122, help="first tracker's port; 0: free ports")
    up.add_argument("--storage-port", type=int, default=23000, help="first storage's port; 0: free ports")
    up.add_argument("--sync-mode", default="always", choices=["always", "interval", "none"])
    up.add_argument("--stat-layout", default="6.15", choices=["6.15", "6.10"])
    up.add_argument("--detach", action="store_true", help="return once ready; stop with `cluster down`")
    up.set_defaults(handler=cluster_up)

    down = actions.add_parser("down", help="stop a detached bundled cluster")
    _add_dir(down)
    down.set_defaults(handler=cluster_down)

    status = actions.add_parser("status", help="show the bundled cluster's servers")
    _add_dir(status)
    status.set_defaults(handler=cluster_status)


def _add_dir(parser: argparse.ArgumentParser) -> None:
    from cluster.cli import DEFAULT_DIR

    parser.add_argument(
        "--dir", type=Path, default=Path(DEFAULT_DIR), help=f"cluster directory (default {DEFAULT_DIR})"
    )


def cluster_up(options: argparse.Namespace) -> int:
    spec = bundle.BundleSpec(
        directory=options.dir,
        trackers=options.trackers,
        storages=options.storages if options.storages is not None else options.groups,
        groups=options.groups,
        tracker_port=options.tracker_port,
        storage_port=options.storage_port,
        sync_mode=options.sync_mode,
        stat_layout=options.stat_layout,
    )
    # In the foreground, Ctrl-C and SIGTERM become a stop request from before the first server
    # starts, so that no moment exists at which an interrupt could leave servers running; a
    # request made during start-up is acted on as soon as every server is ready.
    stop_request = None if options.detach else bundle.StopRequest()
    try:
        started = bundle.up(spec, detach=options.detach)
        if stop_request is not None and stop_request.requested:
            stopped = bundle.stop(started)
            print(f"interrupted during start-up; stopped {len(stopped)} server(s)")
            return 130
        trackers = ",".join(t.address for t in started.trackers)
        print(f"trackers: {trackers}")
        print("\n".join(bundle.describe(started)))
        counts = f"{len(started.trackers)} tracker(s), {len(started.storages)} storage(s)"
        print(f"cluster ready: {counts} in {started.directory}")
        if stop_request is None:
            print(f"stop it with: trunkstore cluster down --dir {options.dir}")
            return 0
        print("press Ctrl-C to stop")
        sys.stdout.flush()
        died = bundle.wait_until_stopped(started, stop_request)
        for record in died:
            print(f"{record.name} exited unexpectedly; see {record.log}", file=sys.stderr)
        stopped = bundle.stop(started)
        print(f"stopped {len(stopped)} server(s)")
        return 1 if died else 0
    finally:
        if stop_request is not None:
            stop_request.restore()


def cluster_down(options: argparse.Namespace) -> int:
    stopped = bundle.down(options.dir)
    print(f"stopped {len(stopped)} server(s)" if stopped else "nothing was running")
    return 0


def cluster_status(options: argparse.Namespace) -> int:
    found = bundle.Bundle.load(options.dir.resolve())
    if found is None:
        print(f"no cluster was started in {options.dir}")
        return 1
    running = {s.name for s in found.running()}
    for record in found.servers:
        state = "running" if record.name in running else "stopped"
        print(f"{record.name:<10} {record.address:<21} pid {record.pid:<8} {state}")
    return 0 if running else 1


# ---- file commands ----------------------------------------------------------------------------------
def add_file_commands(sub: Any) -> None:
    def with_client(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "--tracker", action="append", default=[], metavar="HOST:PORT", help="a tracker (repeatable)"
        )
        parser.add_argument("--conf", type=Path, help="a FastDFS client.conf with tracker_server lines")
        _add_dir(parser)
        parser.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
        return parser

    upload = with_client(sub.add_parser("upload", help="upload a file ('-' reads standard input)"))
    upload.add_argument("file")
    upload.add_argument("--ext", default=None, help="extension (default: the file's, up to 6 characters)")
    upload.add_argument("--group", default=None, help="upload into this group")
    upload.add_argument("--appender", action="store_true", help="upload an appender file")
    upload.add_argument("--meta", action="append", default=[], metavar="K=V", help="metadata (repeatable)")
    upload.set_defaults(handler=upload_file)

    download = with_client(sub.add_parser("download", help="download a file ('-' as DEST writes to stdout)"))
    download.add_argument("file_id")
    download.add_argument("dest", nargs="?", default=None, help="destination (default: the ID's file name)")
    download.add_argument("--offset", type=int, default=0)
    download.add_argument("--length", type=int, default=0, help="bytes to read (0: to the end)")
    download.set_defaults(handler=download_file)

    delete = with_client(sub.add_parser("delete", help="delete files"))
    delete.add_argument("file_ids", nargs="+", metavar="file_id")
    delete.set_defaults(handler=delete_files)

    info = with_client(sub.add_parser("info", help="show a file's size, crc32, creation time and source"))
    info.add_argument("file_id")
    info.set_defaults(handler=file_info)

    meta = with_client(sub.add_parser("meta", help="show a file's metadata, or set it with K=V arguments"))
    meta.add_argument("file_id")
    meta.add_argument("pairs", nargs="*", metavar="K=V")
    meta.add_argument("--merge", action="store_true", help="merge into the existing metadata instead of replacing it")
    meta.set_defaults(handler=file_meta)

    append = with_client(sub.add_parser("append", help="append a local file to an appender file"))
    append.add_argument("file_id")
    append.add_argument("file")
    append.set_defaults(handler=append_file)

    watch = with_client(sub.add_parser("monitor", help="show groups and storages, as fdfs_monitor does"))
    watch.add_argument("--group", default=None, help="only this group")
    watch.set_defaults(handler=show_monitor)

    remove = with_client(
        sub.add_parser("delete-storage", help="remove a stopped storage from its group on every tracker")
    )
    remove.add_argument("group")
    remove.add_argument("storage", help="its storage ID, IP, or IP:PORT")
    remove.set_defaults(handler=delete_storage)


def trackers_for(options: argparse.Namespace) -> tuple[list[str], ClientConfig | None]:
    """Where the file commands find the trackers: options, conf file, environment, bundled cluster."""
    if options.tracker:
        return list(options.tracker), None
    if options.conf is not None:
        from cluster.client import ClientConfig

        config = ClientConfig.from_file(options.conf)
        return [f"{a.host}:{a.port}" for a in config.trackers], config
    from_env = os.environ.get(ENV_TRACKER, "").strip()
    if from_env:
        return [t for t in from_env.replace(",", " ").split() if t], None
    found = bundle.Bundle.load(options.dir.resolve())
    if found is not None and found.running():
        return [t.address for t in found.trackers], None
    return ["127.0.0.1:22122"], None


def open_client(options: argparse.Namespace) -> Client:
    from cluster.client import Client

    trackers, config = trackers_for(options)
    if config is not None:
        return Client(trackers, config=config)
    return Client(trackers, network_timeout=options.timeout)


def _pairs(items: list[str]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"metadata must be given as KEY=VALUE, not {item!r}")
        meta[key] = value
    return meta


def upload_file(options: argparse.Namespace) -> int:
    meta = _pairs(options.meta) or None
    bar = ProgressBar("upload")
    with open_client(options) as client, _stdin_spooled(options.file == "-") as spooled:
        # A pipe's size is unknown until it ends, and the upload header must carry the size:
        # standard input is spooled to a temporary file first (memory stays bounded).
        source: Any = spooled if spooled is not None else options.file
        ext = options.ext if options.ext is not None else ("" if options.file == "-" else None)
        kwargs: dict[str, Any] = {"group": options.group, "meta": meta, "progress": bar}
        if ext is not None:
            kwargs["ext"] = ext
        try:
            file_id = client.upload_appender(source, **kwargs) if options.appender else client.upload(source, **kwargs)
        finally:
            bar.finish()
    print(file_id)
    return 0


@contextlib.contextmanager
def _stdin_spooled(wanted: bool) -> Iterator[BinaryIO | None]:
    if not wanted:
        yield None
        return
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
        spool.seek(0)
        yield spool


def download_file(options: argparse.Namespace) -> int:
    dest = options.dest if options.dest is not None else options.file_id.rsplit("/", 1)[-1]
    bar = ProgressBar("download")
    with open_client(options) as client:
        try:
            if dest == "-":
                count = client.download_to(options.file_id, sys.stdout.buffer, options.offset, options.length)
                sys.stdout.buffer.flush()
            else:
                count = client.download_to(options.file_id, dest, options.offset, options.length, progress=bar)
        finally:
            bar.finish()
    if dest != "-":
        print(f"{count} bytes written to {dest}")
    return 0


def delete_files(options: argparse.Namespace) -> int:
    failed = 0
    with open_client(options) as client:
        for file_id in options.file_ids:
            try:
                client.delete(file_id)
                print(f"deleted {file_id}")
            except ClusterError as exc:
                failed += 1
                print(f"trunkstore: {file_id}: {exc}", file=sys.stderr)
    return 1 if failed else 0


def file_info(options: argparse.Namespace) -> int:
    import time

    with open_client(options) as client:
        info = client.file_info(options.file_id)
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.create_time))
    print(f"type: {info.kind}")
    print(f"source ip address: {info.source_ip}")
    print(f"file create timestamp: {created}")
    print(f"file size: {info.size}")
    print(f"file crc32: {info.crc32} (0x{info.crc32:08x})")
    return 0


def file_meta(options: argparse.Namespace) -> int:
    with open_client(options) as client:
        if options.pairs:
            client.set_meta(options.file_id, _pairs(options.pairs), merge=options.merge)
            return 0
        for key, value in sorted(client.get_meta(options.file_id).items()):
            print(f"{key}={value}")
    return 0


def append_file(options: argparse.Namespace) -> int:
    bar = ProgressBar("append")
    with open_client(options) as client:
        try:
            client.append(options.file_id, options.file, progress=bar)
        finally:
            bar.finish()
    return 0


def show_monitor(options: argparse.Namespace) -> int:
    trackers, _config = trackers_for(options)
    with open_client(options) as client:
        groups = client.list_groups()
        if options.group is not None:
            groups = [g for g in groups if g.group_name == options.group]
            if not groups:
                raise ClusterError(f"no group named {options.group!r}")
        storages = {g.group_name: client.list_storages(g.group_name) for g in groups}
    print(monitor.render(trackers[0], groups, storages), end="")
    return 0


def delete_storage(options: argparse.Namespace) -> int:
    with open_client(options) as client:
        client.delete_storage(options.group, options.storage)
    print(f"storage {options.storage} deleted from {options.group}")
    return 0
