"""The one exception the codec raises on purpose."""

from __future__ import annotations

EINVAL = 22


class ProtocolError(ValueError):
    """Bytes that do not form a valid message, or a message that cannot be encoded.

    ``status`` is the errno a server answers with (a FastDFS reply header carries it); malformed
    input is EINVAL unless the raiser knows better.
    """

    def __init__(self, message: str, status: int = EINVAL) -> None:
        super().__init__(message)
        self.status = status
