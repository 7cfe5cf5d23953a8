"""Small file-system helpers the engine's I/O layers share: durable renames, hole punching, free space."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_ZEROS = bytes(1 << 16)
PAGE = 4096

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_fallocate = getattr(_libc, "fallocate64", None) or getattr(_libc, "fallocate", None)
if _fallocate is not None:
    _fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    _fallocate.restype = ctypes.c_int


class _PunchSupport:
    """Whether the file system can punch holes; learnt from the first attempt."""

    available = _fallocate is not None


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Give ``[offset, offset+length)`` back to the file system; the range then reads as zeros.

    Returns False (and changes nothing) where the file system cannot punch holes.
    """
    if length <= 0 or not _PunchSupport.available or _fallocate is None:
        return False
    if _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS):
        _PunchSupport.available = False
        return False
    raise OSError(err, os.strerror(err))


def zero_range(fd: int, offset: int, length: int) -> None:
    """Write zeros over ``[offset, offset+length)``."""
    while length > 0:
        chunk = min(length, len(_ZEROS))
        os.pwrite(fd, _ZEROS[:chunk], offset)
        offset += chunk
        length -= chunk


def clear_range(fd: int, offset: int, length: int, free_start: int, free_end: int) -> None:
    """Make ``[offset, offset+length)`` read as zeros, returning whole pages to the file system.

    ``[free_start, free_end)`` is the whole free extent around the range (after merging): every page
    inside it that the range touches is punched, so pages that straddled a neighbour freed earlier are
    returned too.  Pages inside the extent that the range does not touch lay wholly inside free space
    already, and were punched then (or never written), so the punch stays as small as the range
    however large the free run around it.  The bytes of the range outside punched pages are zero-filled.
    """
    end = offset + length
    page_start = max(-(-free_start // PAGE), offset // PAGE) * PAGE
    page_end = min(free_end // PAGE, -(-end // PAGE)) * PAGE
    # One call for the range and the pages around it: a punch zero-fills the partial pages at its ends
    # itself, so the bytes of the range outside whole pages need no writes of their own.
    start = min(offset, page_start)
    if page_end <= page_start or not punch_hole(fd, start, max(end, page_end) - start):
        zero_range(fd, offset, length)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: str, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content, never a mix."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(os.path.dirname(path) or ".")


def disk_space(path: str) -> tuple[int, int]:
    """``(total, available)`` bytes of the file system holding ``path``."""
    info = os.statvfs(path)
    return info.f_blocks * info.f_frsize, info.f_bavail * info.f_frsize
