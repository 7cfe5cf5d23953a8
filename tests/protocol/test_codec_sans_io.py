"""The codec's shape: no I/O modules, immutable slotted messages."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import cluster.protocol as protocol


def test_imports_no_io_module() -> None:
    code = (
        "import sys, cluster.protocol\n"
        "bad = {'asyncio', 'socket', 'selectors'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_messages_are_frozen_and_slotted() -> None:
    classes = [getattr(protocol, name) for name in protocol.__all__]
    messages = [c for c in classes if isinstance(c, type) and dataclasses.is_dataclass(c)]
    assert len(messages) > 60
    for cls in messages:
        assert cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]
        assert "__slots__" in cls.__dict__, cls
        assert "__dict__" not in dir(cls), cls  # every base is slotted too: instances have no dict
