"""Tracker commands a client uses, except the stat listings (those are in :mod:`.stats`).

Requests::

    101 QUERY_STORE_WITHOUT_GROUP_ONE   empty
    104 QUERY_STORE_WITH_GROUP_ONE      group[16]
    106 QUERY_STORE_WITHOUT_GROUP_ALL   empty
    107 QUERY_STORE_WITH_GROUP_ALL      group[16]
    102 QUERY_FETCH_ONE                 group[16] filename
    103 QUERY_UPDATE                    group[16] filename
    105 QUERY_FETCH_ALL                 group[16] filename
     91 SERVER_LIST_ALL_GROUPS          empty
     90 SERVER_LIST_ONE_GROUP           group[16]
     92 SERVER_LIST_STORAGE             group[16] [storage_id, 1..16 bytes, unpadded]
     93 SERVER_DELETE_STORAGE           group[16] storage_id (its ID, IP or ip:port, 1..45 bytes,
                                        unpadded); reply empty

Replies (IPs are 15 bytes here, without room for a NUL; ports are int64)::

    store, one  (101, 104)   group[16] ip[15] port[8] store_path_index[1]              40 bytes
    store, all  (106, 107)   group[16] n x (ip[15] port[8]) store_path_index[1]
    fetch, one  (102, 103)   group[16] ip[15] port[8]                                  39 bytes
    fetch, all  (105)        group[16] ip[15] port[8] (n-1) x ip[15]

The PyPI clients accept only exactly 40 and 39 bytes for the "one" replies.  The fetch-all reply
names one port for all its storages: that is what FastDFS's ``tracker_query_storage_list`` parses
(a group's storages share one port in FastDFS), so it is what is sent here too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from .base import Reply, Request
from .codes import Command
from .errors import ProtocolError
from .fields import (
    GROUP_LEN,
    IP_TEXT_LEN,
    STORAGE_ID_LEN,
    TRACKER_IP_LEN,
    Address,
    check_port,
    decode_fixed,
    decode_group_file,
    encode_fixed,
    encode_group_file,
    encode_text,
    expect_len,
    expect_min_len,
)

STORE_TARGET = struct.Struct("!16s15sqB")  # 40
FETCH_TARGET = struct.Struct("!16s15sq")  # 39
SERVER = struct.Struct("!15sq")  # 23


def _group_body(group: str | None) -> bytes:
    return b"" if group is None else encode_fixed(group, GROUP_LEN, "group")


def _decode_optional_group(body: bytes, with_group: bool, what: str) -> str | None:
    if not with_group:
        expect_len(body, 0, what)
        return None
    expect_len(body, GROUP_LEN, what)
    return decode_fixed(body, "group")


@dataclass(frozen=True, slots=True)
class QueryStoreOneRequest(Request):
    """Where to upload: 101 without a group (the tracker picks one), 104 with one."""

    group: str | None = None

    @property
    def command(self) -> Command:
        if self.group is None:
            return Command.QUERY_STORE_WITHOUT_GROUP_ONE
        return Command.QUERY_STORE_WITH_GROUP_ONE

    def encode_body(self) -> bytes:
        return _group_body(self.group)

    @classmethod
    def decode(cls, body: bytes, command: int) -> QueryStoreOneRequest:
        with_group = command == Command.QUERY_STORE_WITH_GROUP_ONE
        return cls(_decode_optional_group(body, with_group, "QUERY_STORE_ONE"))


@dataclass(frozen=True, slots=True)
class QueryStoreAllRequest(Request):
    """Every storage an upload may go to: 106 without a group, 107 with one."""

    group: str | None = None

    @property
    def command(self) -> Command:
        if self.group is None:
            return Command.QUERY_STORE_WITHOUT_GROUP_ALL
        return Command.QUERY_STORE_WITH_GROUP_ALL

    def encode_body(self) -> bytes:
        return _group_body(self.group)

    @classmethod
    def decode(cls, body: bytes, command: int) -> QueryStoreAllRequest:
        with_group = command == Command.QUERY_STORE_WITH_GROUP_ALL
        return cls(_decode_optional_group(body, with_group, "QUERY_STORE_ALL"))


@dataclass(frozen=True, slots=True)
class QueryFetchOneRequest(Request):
    """A storage to read ``filename`` from (102)."""

    COMMAND: ClassVar[Command] = Command.QUERY_FETCH_ONE
    group: str
    filename: str

    def encode_body(self) -> bytes:
        return encode_group_file(self.group, self.filename)

    @classmethod
    def decode(cls, body: bytes) -> QueryFetchOneRequest:
        return cls(*decode_group_file(body, "QUERY_FETCH_ONE"))


@dataclass(frozen=True, slots=True)
class QueryUpdateRequest(Request):
    """A storage to change ``filename`` on (103): its source if writable.  Clients also read
    metadata and upload slaves through this query."""

    COMMAND: ClassVar[Command] = Command.QUERY_UPDATE
    group: str
    filename: str

    def encode_body(self) -> bytes:
        return encode_group_file(self.group, self.filename)

    @classmethod
    def decode(cls, body: bytes) -> QueryUpdateRequest:
        return cls(*decode_group_file(body, "QUERY_UPDATE"))


@dataclass(frozen=True, slots=True)
class QueryFetchAllRequest(Request):
    """Every storage ``filename`` can be read from (105)."""

    COMMAND: ClassVar[Command] = Command.QUERY_FETCH_ALL
    group: str
    filename: str

    def encode_body(self) -> bytes:
        return encode_group_file(self.group, self.filename)

    @classmethod
    def decode(cls, body: bytes) -> QueryFetchAllRequest:
        return cls(*decode_group_file(body, "QUERY_FETCH_ALL"))


@dataclass(frozen=True, slots=True)
class ListAllGroupsRequest(Request):
    """Stats of every group (91); the reply is a :class:`~cluster.protocol.stats.ListGroupsReply`."""

    COMMAND: ClassVar[Command] = Command.SERVER_LIST_ALL_GROUPS

    def encode_body(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, body: bytes) -> ListAllGroupsRequest:
        expect_len(body, 0, "LIST_ALL_GROUPS")
        return cls()


@dataclass(frozen=True, slots=True)
class ListOneGroupRequest(Request):
    """Stats of one group (90)."""

    COMMAND: ClassVar[Command] = Command.SERVER_LIST_ONE_GROUP
    group: str

    def encode_body(self) -> bytes:
        return encode_fixed(self.group, GROUP_LEN, "group")

    @classmethod
    def decode(cls, body: bytes) -> ListOneGroupRequest:
        expect_len(body, GROUP_LEN, "LIST_ONE_GROUP")
        return cls(decode_fixed(body, "group"))


@dataclass(frozen=True, slots=True)
class ListStorageRequest(Request):
    """Stats of a group's storages (92), or of the one with ``storage_id`` (an ID or an IP)."""

    COMMAND: ClassVar[Command] = Command.SERVER_LIST_STORAGE
    group: str
    storage_id: str | None = None

    def encode_body(self) -> bytes:
        body = encode_fixed(self.group, GROUP_LEN, "group")
        if self.storage_id is not None:
            raw = encode_text(self.storage_id, "storage id")
            if not 0 < len(raw) <= STORAGE_ID_LEN:
                raise ProtocolError(f"storage id must be 1 to {STORAGE_ID_LEN} bytes: {self.storage_id!r}")
            body += raw
        return body

    @classmethod
    def decode(cls, body: bytes) -> ListStorageRequest:
        expect_min_len(body, GROUP_LEN, "LIST_STORAGE")
        if len(body) > GROUP_LEN + STORAGE_ID_LEN:
            raise ProtocolError(f"LIST_STORAGE body is {len(body)} bytes, above {GROUP_LEN + STORAGE_ID_LEN}")
        group = decode_fixed(body[:GROUP_LEN], "group")
        # Some clients NUL-pad the ID; an all-NUL ID means "all storages".
        storage_id = decode_fixed(body[GROUP_LEN:], "storage id") or None
        return cls(group, storage_id)


@dataclass(frozen=True, slots=True)
class DeleteStorageRequest(Request):
    """Remove a storage that is not serving from its group (93), as ``fdfs_monitor ... delete`` does.

    ``storage_id`` names it by its storage ID or IP (FastDFS), or by ``ip:port`` (several storages
    of a group may share an IP here).
    """

    COMMAND: ClassVar[Command] = Command.SERVER_DELETE_STORAGE
    group: str
    storage_id: str

    def encode_body(self) -> bytes:
        raw = encode_text(self.storage_id, "storage id")
        if not 0 < len(raw) < IP_TEXT_LEN:
            raise ProtocolError(f"storage id must be 1 to {IP_TEXT_LEN - 1} bytes: {self.storage_id!r}")
        return encode_fixed(self.group, GROUP_LEN, "group") + raw

    @classmethod
    def decode(cls, body: bytes) -> DeleteStorageRequest:
        expect_min_len(body, GROUP_LEN + 1, "SERVER_DELETE_STORAGE")
        if len(body) >= GROUP_LEN + IP_TEXT_LEN:
            raise ProtocolError(f"SERVER_DELETE_STORAGE body is {len(body)} bytes, above {GROUP_LEN + IP_TEXT_LEN - 1}")
        storage_id = decode_fixed(body[GROUP_LEN:], "storage id")
        if not storage_id:
            raise ProtocolError("SERVER_DELETE_STORAGE names no storage")
        return cls(decode_fixed(body[:GROUP_LEN], "group"), storage_id)


@dataclass(frozen=True, slots=True)
class StoreTargetReply(Reply):
    """Reply to 101/104: the storage (and store path) to upload to.  Exactly 40 bytes."""

    group: str
    ip: str
    port: int
    store_path_index: int

    def encode_body(self) -> bytes:
        check_port(self.port)
        if not 0 <= self.store_path_index <= 0xFF:
            raise ProtocolError(f"store_path_index out of range: {self.store_path_index}")
        return STORE_TARGET.pack(
            encode_fixed(self.group, GROUP_LEN, "group"),
            encode_fixed(self.ip, TRACKER_IP_LEN, "ip"),
            self.port,
            self.store_path_index,
        )

    @classmethod
    def decode(cls, body: bytes) -> StoreTargetReply:
        expect_len(body, STORE_TARGET.size, "store query reply")
        group, ip, port, index = STORE_TARGET.unpack(body)
        return cls(decode_fixed(group, "group"), decode_fixed(ip, "ip"), check_port(port), index)


@dataclass(frozen=True, slots=True)
class StoreTargetsReply(Reply):
    """Reply to 106/107: every storage of the chosen group that takes uploads (at least one)."""

    group: str
    servers: tuple[Address, ...]
    store_path_index: int

    def encode_body(self) -> bytes:
        if not self.servers:
            raise ProtocolError("a store-all reply names at least one storage")
        if not 0 <= self.store_path_index <= 0xFF:
            raise ProtocolError(f"store_path_index out of range: {self.store_path_index}")
        parts = [encode_fixed(self.group, GROUP_LEN, "group")]
        for server in self.servers:
            ip = encode_fixed(server.host, TRACKER_IP_LEN, "ip")
            parts.append(SERVER.pack(ip, check_port(server.port)))
        parts.append(bytes((self.store_path_index,)))
        return b"".join(parts)

    @classmethod
    def decode(cls, body: bytes) -> StoreTargetsReply:
        count, extra = divmod(len(body) - GROUP_LEN - 1, SERVER.size)
        if count < 1 or extra:
            raise ProtocolError(f"store-all reply body of {len(body)} bytes is not 16 + n*23 + 1")
        servers = tuple(
            Address(decode_fixed(ip, "ip"), check_port(port))
            for ip, port in SERVER.iter_unpack(body[GROUP_LEN:-1])
        )
        return cls(decode_fixed(body[:GROUP_LEN], "group"), servers, body[-1])


@dataclass(frozen=True, slots=True)
class FetchTargetReply(Reply):
    """Reply to 102/103: the storage to read from or to change the file on.  Exactly 39 bytes."""

    group: str
    ip: str
    port: int

    def encode_body(self) -> bytes:
        return FETCH_TARGET.pack(
            encode_fixed(self.group, GROUP_LEN, "group"),
            encode_fixed(self.ip, TRACKER_IP_LEN, "ip"),
            check_port(self.port),
        )

    @classmethod
    def decode(cls, body: bytes) -> FetchTargetReply:
        expect_len(body, FETCH_TARGET.size, "fetch query reply")
        group, ip, port = FETCH_TARGET.unpack(body)
        return cls(decode_fixed(group, "group"), decode_fixed(ip, "ip"), check_port(port))


@dataclass(frozen=True, slots=True)
class FetchTargetsReply(Reply):
    """Reply to 105: every storage holding the file, all listening on ``port`` (at least one)."""

    group: str
    port: int
    ips: tuple[str, ...]

    def encode_body(self) -> bytes:
        if not self.ips:
            raise ProtocolError("a fetch-all reply names at least one storage")
        first = FETCH_TARGET.pack(
            encode_fixed(self.group, GROUP_LEN, "group"),
            encode_fixed(self.ips[0], TRACKER_IP_LEN, "ip"),
            check_port(self.port),
        )
        return first + b"".join(encode_fixed(ip, TRACKER_IP_LEN, "ip") for ip in self.ips[1:])

    @classmethod
    def decode(cls, body: bytes) -> FetchTargetsReply:
        expect_min_len(body, FETCH_TARGET.size, "fetch-all reply")
        more, extra = divmod(len(body) - FETCH_TARGET.size, TRACKER_IP_LEN)
        if extra:
            raise ProtocolError(f"fetch-all reply body of {len(body)} bytes is not 39 + n*15")
        group, ip, port = FETCH_TARGET.unpack_from(body)
        ips = [decode_fixed(ip, "ip")]
        for i in range(more):
            start = FETCH_TARGET.size + i * TRACKER_IP_LEN
            ips.append(decode_fixed(body[start : start + TRACKER_IP_LEN], "ip"))
        return cls(decode_fixed(group, "group"), check_port(port), tuple(ips))


__all__ = [
    "FetchTargetReply",
    "FetchTargetsReply",
    "ListAllGroupsRequest",
    "ListOneGroupRequest",
    "ListStorageRequest",
    "QueryFetchAllRequest",
    "QueryFetchOneRequest",
    "QueryStoreAllRequest",
    "QueryStoreOneRequest",
    "QueryUpdateRequest",
    "StoreTargetReply",
    "StoreTargetsReply",
]
