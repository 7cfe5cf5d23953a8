"""Command codes, reply status codes and the small enumerations carried in message fields.

The numbers are FastDFS's (``tracker_proto.h``, ``storage/storage_proto.h``); status codes are Linux
errno values, which is what FastDFS servers put on the wire whatever the client's platform.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag


class Command(IntEnum):
    """The ``cmd`` byte of a frame header."""

    # storage -> storage: replication
    SYNC_CREATE_FILE = 16
    SYNC_DELETE_FILE = 17
    SYNC_UPDATE_FILE = 18
    SYNC_CREATE_LINK = 19
    SYNC_APPEND_FILE = 25
    SYNC_MODIFY_FILE = 35
    SYNC_TRUNCATE_FILE = 37
    SYNC_RENAME_FILE = 40

    # client -> storage
    UPLOAD_FILE = 11
    DELETE_FILE = 12
    SET_METADATA = 13
    DOWNLOAD_FILE = 14
    GET_METADATA = 15
    UPLOAD_SLAVE_FILE = 21
    QUERY_FILE_INFO = 22
    UPLOAD_APPENDER_FILE = 23
    APPEND_FILE = 24
    MODIFY_FILE = 34
    TRUNCATE_FILE = 36
    REGENERATE_APPENDER_FILENAME = 38

    # storage -> tracker
    STORAGE_REPORT_TRUNK_FREE = 74
    STORAGE_PARAMETER_REQ = 75
    STORAGE_REPORT_STATUS = 76
    STORAGE_JOIN = 81
    STORAGE_BEAT = 83
    STORAGE_REPORT_DISK_USAGE = 84
    STORAGE_SYNC_SRC_REQ = 86
    STORAGE_SYNC_DEST_REQ = 87
    STORAGE_SYNC_NOTIFY = 88
    STORAGE_SYNC_REPORT = 89

    # client -> tracker
    SERVER_LIST_ONE_GROUP = 90
    SERVER_LIST_ALL_GROUPS = 91
    SERVER_LIST_STORAGE = 92
    SERVER_DELETE_STORAGE = 93
    QUERY_STORE_WITHOUT_GROUP_ONE = 101
    QUERY_FETCH_ONE = 102
    QUERY_UPDATE = 103
    QUERY_STORE_WITH_GROUP_ONE = 104
    QUERY_FETCH_ALL = 105
    QUERY_STORE_WITHOUT_GROUP_ALL = 106
    QUERY_STORE_WITH_GROUP_ALL = 107

    # both servers
    QUIT = 82
    ACTIVE_TEST = 111

    #: Every reply carries this code, whatever the request was.
    RESPONSE = 100


#: Storage -> storage replication commands: a storage serves them only to the members of its group.
SYNC_COMMANDS = frozenset(
    {
        Command.SYNC_CREATE_FILE,
        Command.SYNC_DELETE_FILE,
        Command.SYNC_UPDATE_FILE,
        Command.SYNC_CREATE_LINK,
        Command.SYNC_APPEND_FILE,
        Command.SYNC_MODIFY_FILE,
        Command.SYNC_TRUNCATE_FILE,
        Command.SYNC_RENAME_FILE,
    }
)


class Status(IntEnum):
    """The ``status`` byte of a reply header: 0 or a Linux errno."""

    OK = 0
    EPERM = 1
    ENOENT = 2
    EIO = 5
    EAGAIN = 11
    ENOMEM = 12
    EACCES = 13
    EBUSY = 16
    EEXIST = 17
    EINVAL = 22
    EFBIG = 27
    ENOSPC = 28
    ENAMETOOLONG = 36
    ENOSYS = 38
    ENODATA = 61
    ETIMEDOUT = 110
    ECONNREFUSED = 111
    EINPROGRESS = 115


class StorageStatus(IntEnum):
    """A storage server's state as the tracker sees it (``FDFS_STORAGE_STATUS_*``)."""

    INIT = 0
    WAIT_SYNC = 1
    SYNCING = 2
    IP_CHANGED = 3
    DELETED = 4
    OFFLINE = 5
    ONLINE = 6
    ACTIVE = 7
    RECOVERY = 9
    NONE = 99


class RwMode(IntFlag):
    """The ``rw_mode`` byte of a FastDFS >= 6.15 storage stat."""

    NONE = 0
    WRITE = 2
    READ = 4


class FileInfoFlag(IntFlag):
    """QUERY_FILE_INFO carries these in the request header's status byte."""

    NONE = 0
    NO_CRC32 = 1  # do not compute the crc32 of a file whose ID does not hold it
    SILENT = 2  # do not log a missing file


class ChangeFlag(IntFlag):
    """First byte of a non-empty reply to a storage's beat or report: what changed on the tracker."""

    NONE = 0
    LEADER_CHANGED = 1
    TRUNK_SERVER_CHANGED = 2
    GROUP_CHANGED = 4


#: ``store_path_index`` value of an upload that lets the storage choose the store path.
STORE_PATH_ANY = 0xFF
