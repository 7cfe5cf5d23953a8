"""The tracker server: learns groups and storages from their joins and beats, runs the storage
status machine, and answers clients with FastDFS's selection rules.

* :mod:`.config`: :class:`TrackerConfig` from a FastDFS ``tracker.conf``;
* :mod:`.registry`: groups, storages and the status machine (pure state);
* :mod:`.selection`: the store / download selection rules (pure);
* :mod:`.listing`: the LIST_* stats; :mod:`.persist`: the state file;
* :mod:`.server`: the asyncio server; :mod:`.process`: the command line (``main(argv)``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ReservedSpace, TrackerConfig, load_tracker_config
    from .members import Group, Storage
    from .process import main
    from .registry import Registry
    from .server import TrackerServer

# Loaded when first used, so that ``python -m cluster.tracker`` can handle stop signals before
# the server's modules load (see __main__).
_EXPORTS = {
    "ReservedSpace": "config",
    "TrackerConfig": "config",
    "load_tracker_config": "config",
    "main": "process",
    "Group": "members",
    "Registry": "registry",
    "Storage": "members",
    "TrackerServer": "server",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)

__all__ = [
    "Group",
    "Registry",
    "ReservedSpace",
    "Storage",
    "TrackerConfig",
    "TrackerServer",
    "load_tracker_config",
    "main",
]
