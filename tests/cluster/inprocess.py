"""A storage server in the test's own process, for tests that look inside it while real clients, trackers
and peers talk to it over 127.0.0.1.

Its event loop runs in a thread; :meth:`InProcessStorage.run` runs a coroutine there (the server's
objects belong to that loop).  Settings are storage.conf keys over the quick defaults of
:mod:`procs`, as for a storage process.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

from procs import STORAGE_DEFAULTS, ServerProcess, write_conf

from cluster.runtime import new_event_loop
from cluster.storage import StorageConfig, StorageServer

T = TypeVar("T")

TIMEOUT = 30.0


class InProcessStorage:
    """A started :class:`StorageServer`; a context manager that stops it on exit."""

    def __init__(self, tmp_path: Path, trackers: Iterable[ServerProcess] = (), **conf: Any) -> None:
        base = next(p for n in itertools.count() if not (p := tmp_path / f"inprocess{n}").exists())
        base.mkdir(parents=True)
        self.base_path = base
        settings: dict[str, Any] = {**STORAGE_DEFAULTS, "base_path": str(base), "port": 0, **conf}
        addresses = [tracker.address for tracker in trackers]
        if addresses:
            settings["tracker_server"] = addresses
        config, _ = StorageConfig.load(write_conf(base / "storage.conf", settings))
        self.server = StorageServer(config)
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="in-process storage", daemon=True)
        self._thread.start()
        try:
            self.run(self.server.start())
        except BaseException:
            self.stop()
            raise

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the server's loop; its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(TIMEOUT)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self.run(self.server.stop(5.0))
        finally:
            self._end_loop()

    def _end_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)
        self.loop.close()

    def __enter__(self) -> InProcessStorage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
