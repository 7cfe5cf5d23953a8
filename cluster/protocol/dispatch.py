"""Bodies to typed messages, by command: what a server does with a frame, and a client with a reply.

``parse_request(cmd, body, status)`` decodes any request of the protocol; a streamed command (an
upload, say) whose whole body is at hand decodes to a :class:`RequestWithData`.  The header's
status byte matters only to QUERY_FILE_INFO (its flags) and is otherwise ignored, as FastDFS does.

``parse_reply(request_cmd, body, layout)`` decodes the reply to a request (replies do not name the
command they answer, so the caller says which it sent).  ``layout`` picks the stat layout of the
LIST_* replies.  Error replies are header-only and never reach this function.

Both raise :class:`ProtocolError`, and nothing else, on malformed input and unknown commands.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import (
    ActiveTestRequest,
    EmptyReply,
    QuitRequest,
    Reply,
    Request,
    RequestWithData,
    decode_with_data,
)
from .codes import SYNC_COMMANDS, Command
from .errors import ProtocolError
from .membership_messages import (
    ParameterReply,
    ParameterRequest,
    ReportStatusRequest,
    SyncDestRequest,
    SyncNotifyRequest,
    SyncSourceReply,
    SyncSrcRequest,
)
from .peer_messages import (
    BeatRequest,
    ReportDiskUsageRequest,
    ReportTrunkFreeRequest,
    StorageJoinReply,
    StorageJoinRequest,
    SyncReportRequest,
    TrackerChangesReply,
)
from .stats import ListGroupsReply, ListStoragesReply, StatLayout
from .storage_messages import (
    DeleteFileRequest,
    DownloadFileRequest,
    DownloadReply,
    FileIdReply,
    FileInfoReply,
    GetMetadataRequest,
    MetadataReply,
    QueryFileInfoRequest,
    RegenerateAppenderFilenameRequest,
    SetMetadataRequest,
    TruncateFileRequest,
)
from .streaming import STREAMED
from .sync_messages import (
    SyncCreateLinkRequest,
    SyncDeleteFileRequest,
    SyncRenameFileRequest,
    SyncTruncateFileRequest,
    SyncUpdateFileRequest,
)
from .tracker_messages import (
    DeleteStorageRequest,
    FetchTargetReply,
    FetchTargetsReply,
    ListAllGroupsRequest,
    ListOneGroupRequest,
    ListStorageRequest,
    QueryFetchAllRequest,
    QueryFetchOneRequest,
    QueryStoreAllRequest,
    QueryStoreOneRequest,
    QueryUpdateRequest,
    StoreTargetReply,
    StoreTargetsReply,
)

AnyRequest = Request | RequestWithData

_BODY_ONLY: dict[int, Callable[[bytes], Request]] = {
    ActiveTestRequest.COMMAND: ActiveTestRequest.decode,
    QuitRequest.COMMAND: QuitRequest.decode,
    QueryFetchOneRequest.COMMAND: QueryFetchOneRequest.decode,
    QueryUpdateRequest.COMMAND: QueryUpdateRequest.decode,
    QueryFetchAllRequest.COMMAND: QueryFetchAllRequest.decode,
    ListAllGroupsRequest.COMMAND: ListAllGroupsRequest.decode,
    ListOneGroupRequest.COMMAND: ListOneGroupRequest.decode,
    ListStorageRequest.COMMAND: ListStorageRequest.decode,
    DeleteStorageRequest.COMMAND: DeleteStorageRequest.decode,
    DownloadFileRequest.COMMAND: DownloadFileRequest.decode,
    DeleteFileRequest.COMMAND: DeleteFileRequest.decode,
    SetMetadataRequest.COMMAND: SetMetadataRequest.decode,
    GetMetadataRequest.COMMAND: GetMetadataRequest.decode,
    TruncateFileRequest.COMMAND: TruncateFileRequest.decode,
    RegenerateAppenderFilenameRequest.COMMAND: RegenerateAppenderFilenameRequest.decode,
    StorageJoinRequest.COMMAND: StorageJoinRequest.decode,
    BeatRequest.COMMAND: BeatRequest.decode,
    ReportDiskUsageRequest.COMMAND: ReportDiskUsageRequest.decode,
    ReportTrunkFreeRequest.COMMAND: ReportTrunkFreeRequest.decode,
    SyncReportRequest.COMMAND: SyncReportRequest.decode,
    SyncSrcRequest.COMMAND: SyncSrcRequest.decode,
    SyncDestRequest.COMMAND: SyncDestRequest.decode,
    SyncNotifyRequest.COMMAND: SyncNotifyRequest.decode,
    ReportStatusRequest.COMMAND: ReportStatusRequest.decode,
    ParameterRequest.COMMAND: ParameterRequest.decode,
    SyncUpdateFileRequest.COMMAND: SyncUpdateFileRequest.decode,
    SyncTruncateFileRequest.COMMAND: SyncTruncateFileRequest.decode,
    SyncDeleteFileRequest.COMMAND: SyncDeleteFileRequest.decode,
    SyncRenameFileRequest.COMMAND: SyncRenameFileRequest.decode,
    SyncCreateLinkRequest.COMMAND: SyncCreateLinkRequest.decode,
}

_BY_COMMAND: dict[int, Callable[[bytes, int], Request]] = {
    Command.QUERY_STORE_WITHOUT_GROUP_ONE: QueryStoreOneRequest.decode,
    Command.QUERY_STORE_WITH_GROUP_ONE: QueryStoreOneRequest.decode,
    Command.QUERY_STORE_WITHOUT_GROUP_ALL: QueryStoreAllRequest.decode,
    Command.QUERY_STORE_WITH_GROUP_ALL: QueryStoreAllRequest.decode,
}


def parse_request(cmd: int, body: bytes, status: int = 0) -> AnyRequest:
    """The typed request of a whole frame."""
    decode = _BODY_ONLY.get(cmd)
    if decode is not None:
        return decode(body)
    by_command = _BY_COMMAND.get(cmd)
    if by_command is not None:
        return by_command(body, cmd)
    if cmd == Command.QUERY_FILE_INFO:
        return QueryFileInfoRequest.decode(body, status)
    streamed = STREAMED.get(cmd)
    if streamed is not None:
        return decode_with_data(streamed, body)
    raise ProtocolError(f"unknown command {cmd}")


_REPLIES: dict[int, Callable[[bytes], Reply]] = {
    Command.QUERY_STORE_WITHOUT_GROUP_ONE: StoreTargetReply.decode,
    Command.QUERY_STORE_WITH_GROUP_ONE: StoreTargetReply.decode,
    Command.QUERY_STORE_WITHOUT_GROUP_ALL: StoreTargetsReply.decode,
    Command.QUERY_STORE_WITH_GROUP_ALL: StoreTargetsReply.decode,
    Command.QUERY_FETCH_ONE: FetchTargetReply.decode,
    Command.QUERY_UPDATE: FetchTargetReply.decode,
    Command.QUERY_FETCH_ALL: FetchTargetsReply.decode,
    Command.ACTIVE_TEST: EmptyReply.decode,
    Command.UPLOAD_FILE: FileIdReply.decode,
    Command.UPLOAD_APPENDER_FILE: FileIdReply.decode,
    Command.UPLOAD_SLAVE_FILE: FileIdReply.decode,
    Command.REGENERATE_APPENDER_FILENAME: FileIdReply.decode,
    Command.DOWNLOAD_FILE: DownloadReply.decode,
    Command.GET_METADATA: MetadataReply.decode,
    Command.QUERY_FILE_INFO: FileInfoReply.decode,
    Command.STORAGE_JOIN: StorageJoinReply.decode,
    Command.STORAGE_BEAT: TrackerChangesReply.decode,
    Command.STORAGE_REPORT_DISK_USAGE: TrackerChangesReply.decode,
    Command.STORAGE_SYNC_REPORT: TrackerChangesReply.decode,
    Command.STORAGE_SYNC_SRC_REQ: SyncSourceReply.decode,
    Command.STORAGE_SYNC_DEST_REQ: SyncSourceReply.decode,
    Command.STORAGE_PARAMETER_REQ: ParameterReply.decode,
}

_EMPTY_REPLIES = frozenset(
    {
        Command.DELETE_FILE,
        Command.SET_METADATA,
        Command.APPEND_FILE,
        Command.MODIFY_FILE,
        Command.TRUNCATE_FILE,
        Command.STORAGE_SYNC_NOTIFY,
        Command.STORAGE_REPORT_STATUS,
        Command.STORAGE_REPORT_TRUNK_FREE,
        Command.SERVER_DELETE_STORAGE,
        *SYNC_COMMANDS,
    }
)


def parse_reply(request_cmd: int, body: bytes, layout: StatLayout = StatLayout.V6_15) -> Reply:
    """The typed successful reply to a request of command ``request_cmd``."""
    decode = _REPLIES.get(request_cmd)
    if decode is not None:
        return decode(body)
    if request_cmd in _EMPTY_REPLIES:
        return EmptyReply.decode(body)
    if request_cmd in (Command.SERVER_LIST_ALL_GROUPS, Command.SERVER_LIST_ONE_GROUP):
        groups = ListGroupsReply.decode(body, layout)
        if request_cmd == Command.SERVER_LIST_ONE_GROUP and len(groups.groups) != 1:
            raise ProtocolError(f"LIST_ONE_GROUP reply holds {len(groups.groups)} groups, not 1")
        return groups
    if request_cmd == Command.SERVER_LIST_STORAGE:
        return ListStoragesReply.decode(body, layout)
    raise ProtocolError(f"no reply is defined for command {request_cmd}")
