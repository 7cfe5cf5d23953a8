"""What the engine accepts as a file's bytes: any contiguous buffer, measured in bytes.

``len()`` of a memoryview counts its items, so ``memoryview(array("i", ...))`` would be stored with a
quarter of its size in the file ID (and then read back as corrupt); a flat byte view makes every
length, checksum and write that follows agree.
"""

from __future__ import annotations

from trunkstore.errors import InvalidArgument

Bytes = bytes | bytearray | memoryview


def byte_view(data: object) -> Bytes:
    """``data`` itself if it is ``bytes`` or ``bytearray``, else a flat byte view of its buffer.

    :class:`InvalidArgument` for an object without a buffer (a ``str``, say) or a non-contiguous one.
    """
    if isinstance(data, (bytes, bytearray)):
        return data
    try:
        return memoryview(data).cast("B")  # type: ignore[arg-type]  # any object: checked here
    except TypeError as exc:
        raise InvalidArgument(f"a file's data is a contiguous bytes-like object, not {type(data).__name__}") from exc
