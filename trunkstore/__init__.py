"""trunkstore: an embeddable storage engine for very many small files, FastDFS-compatible.

>>> from trunkstore import Store
>>> with Store("/var/lib/photos") as store:          # doctest: +SKIP
...     file_id = store.put(b"...", ext="jpg")
...     data = store.get(file_id)
"""

from trunkstore.config import StoreConfig
from trunkstore.errors import (
    AlreadyExists,
    ConfigError,
    ContentMismatch,
    CorruptData,
    FileExists,
    FileNotFound,
    FormatMismatch,
    InvalidArgument,
    InvalidFileId,
    NotAppender,
    SlotConflict,
    StoreClosed,
    StoreFull,
    TrunkstoreError,
)
from trunkstore.fileid import FileId, FileKind, parse_file_id
from trunkstore.reports import CheckReport, FileStat, ScrubReport, StoreStats
from trunkstore.store import Store
from trunkstore.upload import Upload

__all__ = [
    "AlreadyExists",
    "CheckReport",
    "ConfigError",
    "ContentMismatch",
    "CorruptData",
    "FileExists",
    "FileId",
    "FileKind",
    "FileNotFound",
    "FileStat",
    "FormatMismatch",
    "InvalidArgument",
    "InvalidFileId",
    "NotAppender",
    "ScrubReport",
    "SlotConflict",
    "Store",
    "StoreClosed",
    "StoreConfig",
    "StoreFull",
    "StoreStats",
    "TrunkstoreError",
    "Upload",
    "parse_file_id",
]
