"""Storage requests over a raw :class:`procs.WireClient`, encoded with the protocol codec.

Each helper sends one request and returns ``(status, body)`` (or the remote file name), so a test
states the exact status FastDFS would answer with.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

from procs import WireClient

from cluster.protocol import (
    AppendFileRequest,
    DeleteFileRequest,
    DownloadFileRequest,
    GetMetadataRequest,
    MetadataFlag,
    ModifyFileRequest,
    QueryFileInfoRequest,
    RegenerateAppenderFilenameRequest,
    SetMetadataRequest,
    TruncateFileRequest,
    UploadAppenderFileRequest,
    UploadFileRequest,
    UploadSlaveFileRequest,
)
from cluster.protocol.codes import FileInfoFlag
from trunkstore import Store, StoreConfig

GROUP = "group1"
UPLOAD, DELETE, SET_META, DOWNLOAD, GET_META = 11, 12, 13, 14, 15
SLAVE, FILE_INFO, APPENDER, APPEND, MODIFY, TRUNCATE, REGENERATE = 21, 22, 23, 24, 34, 36, 38
QUIT, ACTIVE_TEST = 82, 111
ENOENT, EEXIST, EINVAL, ENOSPC = 2, 17, 22, 28


def frame(cmd: int, body: bytes = b"", status: int = 0) -> bytes:
    return struct.pack("!qBB", len(body), cmd, status) + body


def filename_of(reply_body: bytes) -> str:
    assert reply_body[:16].rstrip(b"\0") == GROUP.encode()
    return reply_body[16:].decode()


def upload(wire: WireClient, data: bytes, ext: str = "txt", *, appender: bool = False) -> str:
    """Upload and return the remote file name (``M00/...``); the upload must succeed."""
    status, body = upload_status(wire, data, ext, appender=appender)
    assert status == 0, f"upload failed with status {status}"
    return filename_of(body)


def upload_status(wire: WireClient, data: bytes, ext: str = "txt", *, appender: bool = False) -> tuple[int, bytes]:
    cls = UploadAppenderFileRequest if appender else UploadFileRequest
    wire.send(cls(0xFF, len(data), ext).encode(data))
    return wire.reply()


def upload_slave(wire: WireClient, master: str, prefix: str, data: bytes, ext: str = "txt") -> tuple[int, bytes]:
    wire.send(UploadSlaveFileRequest(master, prefix, len(data), ext).encode(data))
    return wire.reply()


def download(wire: WireClient, name: str, offset: int = 0, length: int = 0, group: str = GROUP) -> tuple[int, bytes]:
    wire.send(DownloadFileRequest(group, name, offset, length).encode())
    return wire.reply()


def delete(wire: WireClient, name: str, group: str = GROUP) -> tuple[int, bytes]:
    wire.send(DeleteFileRequest(group, name).encode())
    return wire.reply()


def set_meta(wire: WireClient, name: str, meta: dict[str, str], merge: bool = False) -> tuple[int, bytes]:
    flag = MetadataFlag.MERGE if merge else MetadataFlag.OVERWRITE
    wire.send(SetMetadataRequest(GROUP, name, tuple(meta.items()), flag).encode())
    return wire.reply()


def get_meta(wire: WireClient, name: str) -> tuple[int, bytes]:
    wire.send(GetMetadataRequest(GROUP, name).encode())
    return wire.reply()


def file_info(wire: WireClient, name: str, flags: int = 0, group: str = GROUP) -> tuple[int, bytes]:
    wire.send(QueryFileInfoRequest(group, name, FileInfoFlag(flags)).encode())
    return wire.reply()


def append(wire: WireClient, name: str, data: bytes) -> tuple[int, bytes]:
    wire.send(AppendFileRequest(name, len(data)).encode(data))
    return wire.reply()


def modify(wire: WireClient, name: str, offset: int, data: bytes) -> tuple[int, bytes]:
    wire.send(ModifyFileRequest(name, offset, len(data)).encode(data))
    return wire.reply()


def truncate(wire: WireClient, name: str, size: int) -> tuple[int, bytes]:
    wire.send(TruncateFileRequest(name, size).encode())
    return wire.reply()


def regenerate(wire: WireClient, name: str) -> tuple[int, bytes]:
    wire.send(RegenerateAppenderFilenameRequest(name).encode())
    return wire.reply()


def rss_kib(pid: int) -> int:
    """The process's resident set size in KiB (VmRSS)."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def assert_store_clean(base_path: Path) -> None:
    """Open a stopped storage's store (the test settings: 4 MB trunks) and verify every invariant."""
    config = StoreConfig(trunk_file_size=4 << 20, slot_max_size=2 << 20, store_paths=(str(base_path),))
    with Store(base_path, config) as store:
        report = store.check()
        assert report.ok, report.problems
    assert tmp_files(base_path) == []


def tmp_files(base_path: Path) -> list[str]:
    """Files left in the store paths' ``tmp/`` directories (uploads in progress or abandoned)."""
    return [str(p) for p in base_path.glob("**/tmp/*") if p.is_file()] + [
        name for name in os.listdir(base_path) if name.endswith(".tmp")
    ]
