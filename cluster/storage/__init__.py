"""The storage server: FastDFS's client commands served from a :class:`trunkstore.Store`.

Modules: ``config`` (StorageConfig from storage.conf), ``handlers`` (whole requests to replies),
``sessions`` (streamed uploads, appends, modifies), ``transfer`` (sending file regions),
``connection`` (one client connection), ``reporter`` (joining and beating the trackers),
``binlog`` (the record of changes for the peers), ``binlog_sync`` (replies that wait for their
records to be on disk), ``sync_requests`` (records to SYNC_* requests),
``replicator`` (sending them to one peer), ``sync_apply`` and ``pipeline`` (applying a peer's
changes), ``replication`` (all of that for one storage), ``server`` (all of it together) and
``process`` (the command line: ``main(argv)``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cluster.storage.config import StorageConfig
    from cluster.storage.process import main
    from cluster.storage.server import StorageServer

# Loaded when first used, so that ``python -m cluster.storage`` can handle stop signals before
# the server's modules load (see __main__).
_EXPORTS = {"StorageConfig": "config", "StorageServer": "server", "main": "process"}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = ["StorageConfig", "StorageServer", "main"]
