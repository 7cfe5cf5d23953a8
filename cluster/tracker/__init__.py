"""The tracker server: learns groups and storages from their joins and beats, runs the storage
status machine, and answers clients with FastDFS's selection rules.

* :mod:`.config`: :class:`TrackerConfig` from a FastDFS ``tracker.conf``;
* :mod:`.registry`: groups, storages and the status machine (pure state);
* :mod:`.selection`: the store / download selection rules (pure);
* :mod:`.listing`: the LIST_* stats; :mod:`.persist`: the state file;
* :mod:`.server`: the asyncio server; :mod:`.main`: the command line (``main(argv)``).
"""

from .config import ReservedSpace, TrackerConfig, load_tracker_config
from .main import main
from .registry import Group, Registry, Storage
from .server import TrackerServer

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
