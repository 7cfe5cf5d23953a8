"""The engine's exception hierarchy.

Every error the engine raises on purpose derives from :class:`TrunkstoreError` and from the built-in
exception a caller would naturally catch (``FileNotFoundError``, ``ValueError``, ``OSError`` ...), so
code that knows nothing of trunkstore still handles it sensibly.  The OS-flavoured ones carry an
``errno`` so that a server can map them to FastDFS's wire status codes without a lookup table of
classes.
"""

from __future__ import annotations

import errno as _errno


class TrunkstoreError(Exception):
    """Root of every error the engine raises on purpose."""

    #: The errno a FastDFS server answers with for this error.
    status: int = _errno.EIO


class InvalidArgument(TrunkstoreError, ValueError):
    """A caller passed a value the engine refuses (bad extension, negative offset, ...)."""

    status = _errno.EINVAL


class InvalidFileId(InvalidArgument):
    """A file ID that is malformed, foreign to this store, or tries to leave it."""


class ConfigError(InvalidArgument):
    """A setting or configuration file that cannot be used."""


class FormatMismatch(ConfigError):
    """The store on disk was created with format-defining settings that differ from the ones given."""


class NotAppender(InvalidArgument):
    """An appender operation on a file that is not an appender file."""


class _OSFlavoured(TrunkstoreError, OSError):
    """Errors that are also ``OSError``: built as ``Cls(message)`` with the class's errno filled in."""

    def __init__(self, message: str) -> None:
        OSError.__init__(self, self.status, message)

    def __str__(self) -> str:
        return str(self.strerror)


class FileNotFound(_OSFlavoured, FileNotFoundError):
    """No live file has this ID (never stored, deleted, or its slot was reused)."""

    status = _errno.ENOENT


class FileExists(_OSFlavoured, FileExistsError):
    """A file of that name exists already (a slave name that is taken, a replica applied before)."""

    status = _errno.EEXIST


class AlreadyExists(FileExists):
    """A replicated file or change that this store holds already: applying it again changes nothing."""


class SlotConflict(AlreadyExists):
    """A replicated trunk file's slot is taken by another live file; that file is left as it is.

    EBUSY rather than EEXIST: the slot may be held by a file whose delete is still on its way from
    another peer, so the sender retries later instead of taking the file as applied.
    """

    status = _errno.EBUSY


class ContentMismatch(InvalidArgument):
    """Replicated bytes that disagree with what their file ID records (size or crc32)."""


class StoreFull(_OSFlavoured):
    """No space left within the reserved-space limit, or the file system itself is full."""

    status = _errno.ENOSPC


class CorruptData(_OSFlavoured):
    """Stored bytes no longer match their checksum, or the on-disk state contradicts itself."""

    status = _errno.EIO


class StoreClosed(TrunkstoreError, RuntimeError):
    """An operation on a store that has been closed."""

    status = _errno.EBADF
