"""Operation counters, named as FastDFS's storage statistics are."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class Counters:
    """Mutable counters bumped by the store; :meth:`snapshot` gives a consistent copy."""

    upload_total: int = 0
    upload_ok: int = 0
    upload_bytes: int = 0
    download_total: int = 0
    download_ok: int = 0
    download_bytes: int = 0
    delete_total: int = 0
    delete_ok: int = 0
    append_total: int = 0
    append_ok: int = 0
    append_bytes: int = 0
    modify_total: int = 0
    modify_ok: int = 0
    modify_bytes: int = 0
    truncate_total: int = 0
    truncate_ok: int = 0
    set_meta_total: int = 0
    set_meta_ok: int = 0
    get_meta_total: int = 0
    get_meta_ok: int = 0

    def snapshot(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
