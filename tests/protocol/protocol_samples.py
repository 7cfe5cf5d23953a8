"""One or more valid instances of every message kind, shared by the protocol tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cluster.protocol import (
    STORE_PATH_ANY,
    ActiveTestRequest,
    Address,
    AppendFileRequest,
    BeatRequest,
    ChangeFlag,
    Command,
    DeleteFileRequest,
    DeleteStorageRequest,
    DiskUsage,
    DownloadFileRequest,
    DownloadReply,
    EmptyReply,
    FetchTargetReply,
    FetchTargetsReply,
    FileIdReply,
    FileInfoFlag,
    FileInfoReply,
    GetMetadataRequest,
    GroupStat,
    ListAllGroupsRequest,
    ListGroupsReply,
    ListOneGroupRequest,
    ListStorageRequest,
    ListStoragesReply,
    MetadataFlag,
    MetadataReply,
    ModifyFileRequest,
    ParameterReply,
    ParameterRequest,
    QueryFetchAllRequest,
    QueryFetchOneRequest,
    QueryFileInfoRequest,
    QueryStoreAllRequest,
    QueryStoreOneRequest,
    QueryUpdateRequest,
    QuitRequest,
    RegenerateAppenderFilenameRequest,
    Reply,
    ReportDiskUsageRequest,
    ReportStatusRequest,
    ReportTrunkFreeRequest,
    Request,
    RwMode,
    SetMetadataRequest,
    StatLayout,
    StorageBrief,
    StorageJoinReply,
    StorageJoinRequest,
    StorageStat,
    StorageStats,
    StorageStatus,
    StoreTargetReply,
    StoreTargetsReply,
    StreamedRequest,
    SyncAppendFileRequest,
    SyncCreateFileRequest,
    SyncCreateLinkRequest,
    SyncDeleteFileRequest,
    SyncDestRequest,
    SyncModifyFileRequest,
    SyncNotifyRequest,
    SyncProgress,
    SyncRenameFileRequest,
    SyncReportRequest,
    SyncSourceReply,
    SyncSrcRequest,
    SyncTruncateFileRequest,
    SyncUpdateFileRequest,
    TrackerChangesReply,
    TruncateFileRequest,
    UploadAppenderFileRequest,
    UploadFileRequest,
    UploadSlaveFileRequest,
)

NAME = "M00/00/00/fwAAAWsBk1eIBbpcAAATiEgSesEAAAAAQAAKQAAABQA736.txt"
APPENDER = "M00/00/00/fwAAAWsBku2EAwqbAAAAAA_-AcM017.txt"
STATS = StorageStats(*range(1, 46))


@dataclass(frozen=True)
class StreamedSample:
    """A streamed request head and the data that follows it."""

    request: StreamedRequest
    data: bytes

    def encode(self) -> bytes:
        return self.request.encode(self.data)


def _storage(layout: StatLayout, n: int) -> StorageStat:
    common: dict[str, Any] = dict(
        status=StorageStatus.ACTIVE,
        id=f"s{n}",
        ip=f"10.0.0.{n}",
        src_id="s0" if n else "",
        version="6.15" if layout is StatLayout.V6_15 else "6.10",
        join_time=1_700_000_000 + n,
        up_time=1_700_000_100,
        total_mb=1 << 20,
        free_mb=1 << 19,
        upload_priority=10,
        store_path_count=2,
        subdir_count_per_path=256,
        current_write_path=1,
        storage_port=23000 + n,
        stats=STATS,
        if_trunk_server=n == 1,
    )
    if layout is StatLayout.V6_15:
        return StorageStat(**common, rw_mode=RwMode.READ | RwMode.WRITE, reserved_mb=1024)
    return StorageStat(**common, domain_name="files.example.com", storage_http_port=8888)


def _group(layout: StatLayout, name: str) -> GroupStat:
    common: dict[str, Any] = dict(
        group_name=name,
        total_mb=2 << 20,
        free_mb=1 << 20,
        trunk_free_mb=512,
        storage_count=2,
        storage_port=23000,
        current_write_server=1,
        store_path_count=2,
        subdir_count_per_path=256,
        current_trunk_file_id=7,
    )
    if layout is StatLayout.V6_15:
        return GroupStat(**common, reserved_mb=1024, readable_count=2, writable_count=1)
    return GroupStat(**common, storage_http_port=8888, active_count=2)


BRIEF = StorageBrief(StorageStatus.ONLINE, 23000, "s1", "fe80::1")

REQUESTS: list[Request] = [
    ActiveTestRequest(),
    QuitRequest(),
    QueryStoreOneRequest(),
    QueryStoreOneRequest("group1"),
    QueryStoreAllRequest(),
    QueryStoreAllRequest("group16characters"[:16]),
    QueryFetchOneRequest("group1", NAME),
    QueryUpdateRequest("group1", NAME),
    QueryFetchAllRequest("group1", NAME),
    ListAllGroupsRequest(),
    ListOneGroupRequest("group1"),
    ListStorageRequest("group1"),
    ListStorageRequest("group1", "192.168.100.200"),
    DownloadFileRequest("group1", NAME, 100, 200),
    DeleteFileRequest("group1", NAME),
    SetMetadataRequest("group1", NAME, (("width", "1024"), ("author", "zoë")), MetadataFlag.MERGE),
    SetMetadataRequest("group1", NAME, (), MetadataFlag.OVERWRITE),
    GetMetadataRequest("group1", NAME),
    QueryFileInfoRequest("group1", NAME),
    QueryFileInfoRequest("group1", NAME, FileInfoFlag.NO_CRC32 | FileInfoFlag.SILENT),
    TruncateFileRequest(APPENDER, 10),
    RegenerateAppenderFilenameRequest(APPENDER),
    StorageJoinRequest(
        "group1", "s1", 23000, 2, 256, 10, 1_700_000_000, 1_700_000_100, "6.15", True,
        StorageStatus.INIT, "10.0.0.9", (Address("10.0.0.9", 22122), Address("fe80::2", 22122)),
    ),
    StorageJoinRequest("group1", "s2", 23001, 1, 256),
    BeatRequest(),
    BeatRequest(STATS),
    ReportDiskUsageRequest((DiskUsage(1000, 500), DiskUsage(2000, 0))),
    ReportTrunkFreeRequest(63),
    DeleteStorageRequest("group1", "127.0.0.1:23001"),
    DeleteStorageRequest("g", "12"),
    ReportTrunkFreeRequest(0),
    SyncReportRequest(),
    SyncReportRequest((SyncProgress("s1", 1_700_000_000), SyncProgress("s3", 0))),
    SyncSrcRequest("group1", "s2"),
    SyncDestRequest(),
    SyncNotifyRequest("s1", 1_700_000_000),
    ReportStatusRequest("group1", BRIEF),
    ParameterRequest(),
    SyncUpdateFileRequest(1_700_000_000, "group1", NAME, (("a", "1"), ("b", ""))),
    SyncTruncateFileRequest(1_700_000_000, "group1", APPENDER, 100, 10),
    SyncDeleteFileRequest(1_700_000_000, "group1", NAME),
    SyncRenameFileRequest(1_700_000_000, "group1", NAME, APPENDER),
    SyncCreateLinkRequest(1_700_000_000, "group1", NAME, APPENDER),
]

STREAMED_SAMPLES: list[StreamedSample] = [
    StreamedSample(UploadFileRequest(0, 5, "txt"), b"hello"),
    StreamedSample(UploadFileRequest(STORE_PATH_ANY, 0, ""), b""),
    StreamedSample(UploadAppenderFileRequest(1, 3, "tar.gz"), b"abc"),
    StreamedSample(UploadSlaveFileRequest(NAME, "_150x150", 4, "jpg"), b"\x00\xff\x01\x02"),
    StreamedSample(AppendFileRequest(APPENDER, 6), b"append"),
    StreamedSample(ModifyFileRequest(APPENDER, 2, 3), b"mod"),
    StreamedSample(SyncCreateFileRequest(1_700_000_000, "group1", NAME, 5), b"hello"),
    StreamedSample(SyncAppendFileRequest(1_700_000_000, "group1", APPENDER, 6, 4), b"more"),
    StreamedSample(SyncModifyFileRequest(1_700_000_000, "group1", APPENDER, 0, 0), b""),
]


@dataclass(frozen=True)
class ReplySample:
    request_cmd: Command
    reply: Reply
    layout: StatLayout = StatLayout.V6_15


REPLIES: list[ReplySample] = [
    ReplySample(Command.QUERY_STORE_WITHOUT_GROUP_ONE, StoreTargetReply("group1", "127.0.0.1", 23000, 0)),
    ReplySample(Command.QUERY_STORE_WITH_GROUP_ALL, StoreTargetsReply(
        "group1", (Address("10.0.0.1", 23000), Address("255.255.255.255", 23001)), STORE_PATH_ANY)),
    ReplySample(Command.QUERY_FETCH_ONE, FetchTargetReply("group1", "10.0.0.1", 23000)),
    ReplySample(Command.QUERY_UPDATE, FetchTargetReply("group1", "10.0.0.2", 23000)),
    ReplySample(Command.QUERY_FETCH_ALL, FetchTargetsReply("group1", 23000, ("10.0.0.1",))),
    ReplySample(Command.QUERY_FETCH_ALL, FetchTargetsReply("group1", 23000, ("10.0.0.1", "10.0.0.2", "10.0.0.3"))),
    ReplySample(Command.ACTIVE_TEST, EmptyReply()),
    ReplySample(Command.DELETE_FILE, EmptyReply()),
    ReplySample(Command.UPLOAD_FILE, FileIdReply("group1", NAME)),
    ReplySample(Command.REGENERATE_APPENDER_FILENAME, FileIdReply("group1", NAME)),
    ReplySample(Command.DOWNLOAD_FILE, DownloadReply(b"\x00file bytes\xff")),
    ReplySample(Command.GET_METADATA, MetadataReply((("author", "zoë"), ("width", "1024")))),
    ReplySample(Command.QUERY_FILE_INFO, FileInfoReply(1000, 1_795_265_211, 0x51A02E01, "127.0.0.1")),
    ReplySample(Command.QUERY_FILE_INFO, FileInfoReply(20_971_520, 1_795_265_212, 0xFFFFFFFF, "10.0.0.1")),
    ReplySample(Command.STORAGE_JOIN, StorageJoinReply(StorageStatus.WAIT_SYNC, "s1")),
    ReplySample(Command.STORAGE_BEAT, TrackerChangesReply()),
    ReplySample(Command.STORAGE_REPORT_DISK_USAGE, TrackerChangesReply(ChangeFlag.GROUP_CHANGED, (BRIEF, BRIEF))),
    ReplySample(Command.STORAGE_SYNC_REPORT, TrackerChangesReply(ChangeFlag.LEADER_CHANGED)),
    ReplySample(Command.STORAGE_SYNC_SRC_REQ, SyncSourceReply("s1", 1_700_000_000)),
    ReplySample(Command.STORAGE_SYNC_DEST_REQ, SyncSourceReply()),
    ReplySample(Command.STORAGE_PARAMETER_REQ, ParameterReply((("use_storage_id", "0"), ("x", "a b")))),
    ReplySample(Command.STORAGE_PARAMETER_REQ, ParameterReply()),
    *(
        ReplySample(cmd, reply, layout)
        for layout in StatLayout
        for cmd, reply in (
            (Command.SERVER_LIST_ALL_GROUPS, ListGroupsReply((_group(layout, "g1"), _group(layout, "g2")), layout)),
            (Command.SERVER_LIST_ALL_GROUPS, ListGroupsReply((), layout)),
            (Command.SERVER_LIST_ONE_GROUP, ListGroupsReply((_group(layout, "group1234567890a"),), layout)),
            (Command.SERVER_LIST_STORAGE, ListStoragesReply((_storage(layout, 1), _storage(layout, 2)), layout)),
        )
    ),
]
