"""The tracker's state on disk: groups and storages, so that a restarted tracker knows them.

One JSON document at ``<base_path>/data/tracker_state.json``, replaced atomically: written to a
temporary file, fsynced, renamed over the old one, and the directory fsynced, so a crash leaves the
old state or the new one, never a mixture.  :func:`snapshot` takes a plain copy on the event loop;
:func:`write_state` (the slow part) may then run in a thread.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from cluster.protocol import StorageStats, StorageStatus

from .members import Group, Storage
from .registry import Registry

FORMAT = "trunkstore-tracker-state"
VERSION = 1
_STATS_FIELDS = tuple(f.name for f in fields(StorageStats))
INT64_MAX = (1 << 63) - 1


class StateError(ValueError):
    """The state file cannot be read back."""


def snapshot(registry: Registry) -> dict[str, Any]:
    """A JSON-ready copy of what the registry must remember."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "groups": [
            {
                "name": group.name,
                "store_path_count": group.store_path_count,
                "subdir_count_per_path": group.subdir_count_per_path,
                "storages": [_storage_record(s) for s in group.members],
            }
            for group in registry.ordered_groups()
        ],
    }


def _storage_record(storage: Storage) -> dict[str, Any]:
    return {
        "ip": storage.ip,
        "port": storage.port,
        "id": storage.id,
        "status": int(storage.status),
        "version": storage.version,
        "join_time": storage.join_time,
        "up_time": storage.up_time,
        "upload_priority": storage.upload_priority,
        "path_total_mb": list(storage.path_total_mb),
        "path_free_mb": list(storage.path_free_mb),
        "current_write_path": storage.current_write_path,
        "src_id": storage.src_id,
        "sync_until": storage.sync_until,
        "last_beat_wall": storage.last_beat_wall,
        "last_synced_timestamp": storage.last_synced_timestamp,
        "synced_from": dict(storage.synced_from),
        "stats": [getattr(storage.stats, name) for name in _STATS_FIELDS],
    }


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Replace the file at ``path`` with ``state``, atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(state, indent=1, sort_keys=True).encode("utf-8")
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_state(path: Path, registry: Registry) -> bool:
    """Load the state at ``path`` into the (empty) ``registry``; False if there is no file.
    A file that cannot be understood is a :class:`StateError` and leaves the registry empty."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        groups = _decode(json.loads(raw))
        staging = Registry(registry.check_active_interval, registry.clock)
        for group in groups:
            staging.add_loaded(group)
        staging._check()
    except (ValueError, TypeError, KeyError, AssertionError) as exc:
        raise StateError(f"{path} is not a valid tracker state: {exc}") from exc
    for group in groups:
        registry.add_loaded(group)
    registry.dirty = False
    return True


def _decode(document: Any) -> list[Group]:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError("not a tracker state document")
    if document.get("version") != VERSION:
        raise ValueError(f"state version {document.get('version')!r}, expected {VERSION}")
    groups = []
    for item in _list(document["groups"]):
        group = Group(
            name=_text(item["name"]),
            store_path_count=_int(item["store_path_count"], 1, 256),
            subdir_count_per_path=_int(item["subdir_count_per_path"], 1, 256),
        )
        group.members = [_decode_storage(group, record) for record in _list(item["storages"])]
        groups.append(group)
    return groups


def _decode_storage(group: Group, record: Any) -> Storage:
    if not isinstance(record, dict):
        raise ValueError("a storage record is an object")
    paths = group.store_path_count
    total = [_int(v) for v in _list(record["path_total_mb"])]
    free = [_int(v) for v in _list(record["path_free_mb"])]
    if len(total) != len(free) or len(total) not in (0, paths):
        raise ValueError("disk usage does not match the store path count")
    stats = [_int(v, -INT64_MAX - 1) for v in _list(record["stats"])]
    if len(stats) != len(_STATS_FIELDS):
        raise ValueError(f"{len(stats)} counters, expected {len(_STATS_FIELDS)}")
    synced = record["synced_from"]
    if not isinstance(synced, dict):
        raise ValueError("synced_from is an object")
    return Storage(
        group=group.name,
        ip=_text(record["ip"]),
        port=_int(record["port"], 1, 65535),
        id=_text(record["id"]),
        status=StorageStatus(_int(record["status"])),
        store_path_count=paths,
        subdir_count_per_path=group.subdir_count_per_path,
        version=_text(record["version"], allow_empty=True),
        join_time=_int(record["join_time"]),
        up_time=_int(record["up_time"]),
        upload_priority=_int(record["upload_priority"], -INT64_MAX - 1),
        path_total_mb=total or [0] * paths,
        path_free_mb=free or [0] * paths,
        current_write_path=_int(record["current_write_path"], 0, paths - 1),
        stats=StorageStats(*stats),
        src_id=_text(record["src_id"], allow_empty=True),
        sync_until=_int(record["sync_until"]),
        last_beat_wall=_int(record["last_beat_wall"]),
        last_synced_timestamp=_int(record["last_synced_timestamp"]),
        synced_from={_text(k): _int(v) for k, v in synced.items()},
    )


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return value


def _int(value: Any, low: int = 0, high: int = INT64_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{value!r} is not a whole number in {low} .. {high}")
    return value


def _text(value: Any, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or not (value or allow_empty) or len(value) > 64 or not value.isprintable():
        raise ValueError(f"{value!r} is not a short text")
    return value
