"""``trunkstore monitor``: the cluster's state as FastDFS's ``fdfs_monitor`` prints it.

Rendering is a pure function of the listings, so it is tested without a cluster; the same key names
and order as ``fdfs_monitor`` let scripts written against FastDFS parse it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

from cluster.protocol import GroupStat, StorageStat


def _when(timestamp: int) -> str:
    if timestamp <= 0:
        return "1970-01-01 00:00:00"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def render_storage(index: int, storage: StorageStat) -> list[str]:
    stats = storage.stats
    lines = [
        f"\tStorage {index}:",
        f"\t\tid = {storage.id}",
        f"\t\tip_addr = {storage.ip}  {storage.status.name}",
        f"\t\tsource storage id = {storage.src_id}",
        f"\t\tversion = {storage.version}",
        f"\t\tjoin time = {_when(storage.join_time)}",
        f"\t\tup time = {_when(storage.up_time)}",
        f"\t\ttotal storage = {storage.total_mb:,} MB",
        f"\t\tfree storage = {storage.free_mb:,} MB",
        f"\t\tupload priority = {storage.upload_priority}",
        f"\t\tstore_path_count = {storage.store_path_count}",
        f"\t\tsubdir_count_per_path = {storage.subdir_count_per_path}",
        f"\t\tstorage_port = {storage.storage_port}",
        f"\t\tcurrent_write_path = {storage.current_write_path}",
        f"\t\tif_trunk_server = {int(storage.if_trunk_server)}",
        f"\t\tconnection.alloc_count = {stats.alloc_count}",
        f"\t\tconnection.current_count = {stats.current_count}",
        f"\t\tconnection.max_count = {stats.max_count}",
    ]
    for field in dataclasses.fields(stats):
        name = field.name
        if name.startswith(("alloc_", "current_", "max_")):
            continue
        value = getattr(stats, name)
        if name.startswith("last_"):
            lines.append(f"\t\t{name} = {_when(value)}")
        else:
            lines.append(f"\t\t{name} = {value}")
    return lines


def render_group(index: int, group: GroupStat, storages: Sequence[StorageStat]) -> list[str]:
    lines = [
        f"Group {index}:",
        f"group name = {group.group_name}",
        f"disk total space = {group.total_mb:,} MB",
        f"disk free space = {group.free_mb:,} MB",
        f"trunk free space = {group.trunk_free_mb:,} MB",
        f"storage server count = {group.storage_count}",
        f"active server count = {group.active_count or group.readable_count}",
        f"storage server port = {group.storage_port}",
        f"store path count = {group.store_path_count}",
        f"subdir count per path = {group.subdir_count_per_path}",
        f"current write server index = {group.current_write_server}",
        f"current trunk file id = {group.current_trunk_file_id}",
        "",
    ]
    for number, storage in enumerate(storages, 1):
        lines.extend(render_storage(number, storage))
        lines.append("")
    return lines


def render(tracker: str, groups: Sequence[GroupStat], storages: Mapping[str, Sequence[StorageStat]]) -> str:
    """The whole report for the tracker at ``tracker``."""
    lines = [f"tracker server is {tracker}", "", f"group count: {len(groups)}", ""]
    for number, group in enumerate(groups, 1):
        lines.extend(render_group(number, group, storages.get(group.group_name, ())))
    return "\n".join(lines).rstrip() + "\n"
