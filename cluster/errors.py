"""The cluster's exception hierarchy and the one mapping between errors and wire status codes.

Every error the servers, the client and the command line raise on purpose derives from
:class:`ClusterError` and from the built-in a caller would naturally catch (``FileNotFoundError``,
``ValueError``, ``TimeoutError``, ``ConnectionError`` ...).  Each carries ``status``, the errno that
FastDFS puts in a reply header for it, so that:

* a server answers any exception with :func:`status_for_exception` (engine errors, protocol errors
  and cluster errors all carry a ``status``; anything else is EIO, never a traceback on the wire);
* a client turns a non-zero reply status into an exception with :func:`error_for_status`.
"""

from __future__ import annotations

import errno as _errno


class ClusterError(Exception):
    """Root of every error the cluster package raises on purpose."""

    #: The errno carried in a FastDFS reply header for this error.
    status: int = _errno.EIO

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class ConfigError(ClusterError, ValueError):
    """A configuration file or setting that cannot be used."""

    status = _errno.EINVAL


class InvalidRequest(ClusterError, ValueError):
    """The server refused the request as malformed (EINVAL), or a caller passed a bad argument."""

    status = _errno.EINVAL


class NotFound(ClusterError, FileNotFoundError):
    """No such file, group or storage (ENOENT)."""

    status = _errno.ENOENT


class AlreadyExists(ClusterError, FileExistsError):
    """The file to be created exists already (EEXIST), e.g. a slave file name."""

    status = _errno.EEXIST


class AccessDenied(ClusterError, PermissionError):
    """The peer may not use that command (EACCES), e.g. a storage command before joining."""

    status = _errno.EACCES


class NoSpace(ClusterError, OSError):
    """No storage has room for the upload (ENOSPC)."""

    status = _errno.ENOSPC


class Busy(ClusterError, OSError):
    """The server is at its connection limit or otherwise cannot serve now (EBUSY, EAGAIN)."""

    status = _errno.EBUSY


class Unavailable(ClusterError, ConnectionError):
    """No server could be reached: every tracker or storage tried refused or dropped the connection."""

    status = _errno.ECONNREFUSED


class ConnectionLost(ClusterError, ConnectionError):
    """The peer closed the connection, or sent a reply that breaks the protocol, mid-request."""

    status = _errno.EIO


class RequestTimeout(ClusterError, TimeoutError):
    """A connect or a read took longer than its timeout."""

    status = _errno.ETIMEDOUT


class ServerError(ClusterError, OSError):
    """Any other non-zero reply status; ``status`` holds the errno the server sent."""


_BY_STATUS: dict[int, type[ClusterError]] = {
    _errno.EINVAL: InvalidRequest,
    _errno.ENOENT: NotFound,
    _errno.EEXIST: AlreadyExists,
    # A storage deleted from its group already (SERVER_DELETE_STORAGE).
    _errno.EALREADY: AlreadyExists,
    _errno.EACCES: AccessDenied,
    _errno.ENOSPC: NoSpace,
    _errno.EBUSY: Busy,
    _errno.EAGAIN: Busy,
    _errno.ETIMEDOUT: RequestTimeout,
}


def error_for_status(status: int, message: str) -> ClusterError:
    """The exception a client raises for a reply header with a non-zero ``status``."""
    cls = _BY_STATUS.get(status, ServerError)
    try:
        name = _errno.errorcode[status]
    except KeyError:
        name = f"status {status}"
    return cls(f"{message}: {name}", status)


def status_for_exception(exc: BaseException) -> int:
    """The errno a server puts in the reply header for ``exc``.

    Engine errors (:class:`trunkstore.TrunkstoreError`), protocol errors and cluster errors carry a
    ``status``; a plain ``OSError`` carries its ``errno``; anything else is EIO.
    """
    status = getattr(exc, "status", None)
    if isinstance(status, int) and 0 < status < 256:
        return status
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and 0 < exc.errno < 256:
        return exc.errno
    return _errno.EIO
