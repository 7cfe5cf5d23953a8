"""The storage server: FastDFS's client commands served from a :class:`trunkstore.Store`.

Modules: ``config`` (StorageConfig from storage.conf), ``handlers`` (whole requests to replies),
``sessions`` (streamed uploads, appends, modifies), ``transfer`` (sending file regions),
``connection`` (one client connection), ``reporter`` (joining and beating the trackers),
``server`` (all of it together) and ``main`` (the command line).
"""

from cluster.storage.config import StorageConfig
from cluster.storage.main import main
from cluster.storage.server import StorageServer

__all__ = ["StorageConfig", "StorageServer", "main"]
