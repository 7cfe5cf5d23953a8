"""Clients of a trunkstore (or FastDFS) cluster: :class:`Client` (blocking) and :class:`AsyncClient`.

Both take a list of trackers (failing over between them), keep a pool of connections per server,
and offer the same operations under the same names: uploads of bytes, paths and streamed binary
files (normal, appender, slave), downloads to bytes, paths and file objects, ranges, delete,
metadata, appender operations, file info, and the tracker's group and storage listings.  Every
failure raises a :class:`cluster.errors.ClusterError` subclass.
"""

from cluster.errors import (
    AccessDenied,
    AlreadyExists,
    Busy,
    ClusterError,
    ConnectionLost,
    InvalidRequest,
    NoSpace,
    NotFound,
    RequestTimeout,
    ServerError,
    Unavailable,
)

from .async_client import AsyncClient
from .config import ClientConfig
from .requests import ProtocolViolation
from .results import FileInfo, GroupStat, StorageAddress, StorageStat, StoreTarget
from .sync_client import Client

__all__ = [
    "AccessDenied",
    "AlreadyExists",
    "AsyncClient",
    "Busy",
    "Client",
    "ClientConfig",
    "ClusterError",
    "ConnectionLost",
    "FileInfo",
    "GroupStat",
    "InvalidRequest",
    "NoSpace",
    "NotFound",
    "ProtocolViolation",
    "RequestTimeout",
    "ServerError",
    "StorageAddress",
    "StorageStat",
    "StoreTarget",
    "Unavailable",
]
