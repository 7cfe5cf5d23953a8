"""Property tests: every message kind, built from random valid fields, decodes back to itself."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.protocol import (
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
    ReportDiskUsageRequest,
    ReportStatusRequest,
    ReportTrunkFreeRequest,
    RequestWithData,
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
    parse_reply,
    parse_request,
)

GRAPHIC = "".join(chr(c) for c in range(0x21, 0x7F))
ID_CHARS = string.ascii_letters + string.digits + "_-"
EXT_CHARS = string.ascii_letters + string.digits + "._-"

group = st.text(ID_CHARS, min_size=1, max_size=16)
ident = st.text(ID_CHARS, max_size=16)
filename = st.text(GRAPHIC, min_size=1, max_size=128)
ext = st.text(EXT_CHARS, max_size=6)
ip15 = st.text("0123456789.", max_size=15)
ip16 = st.text("0123456789.", max_size=16)
ip46 = st.text("0123456789abcdef:.", max_size=46)
size = st.integers(0, 2**63 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
int32 = st.integers(-(2**31), 2**31 - 1)
u32 = st.integers(0, 2**32 - 1)
port = st.integers(0, 65535)
status = st.sampled_from(StorageStatus)
meta_text = st.text(st.characters(exclude_characters="\x00\x01\x02", exclude_categories=["Cs"]), max_size=70)
metadata = st.lists(st.tuples(meta_text.filter(bool), meta_text), max_size=5)
stats = st.builds(StorageStats, *([int32] * 3 + [int64] * 42))
brief = st.builds(StorageBrief, status, port, ident, ip46)
tracker = st.builds(Address, st.text(GRAPHIC, min_size=1, max_size=20), port)
flags = st.sampled_from([FileInfoFlag(v) for v in range(4)])
change_flags = st.sampled_from([ChangeFlag(v) for v in range(8)])
rw_mode = st.sampled_from([RwMode(v) for v in (0, 2, 4, 6)])
param_value = st.text("".join(chr(c) for c in range(0x20, 0x7F)), max_size=20)
param = st.tuples(st.text(GRAPHIC.replace("=", ""), min_size=1, max_size=20), param_value)

REQUESTS: dict[type, Any] = {
    ActiveTestRequest: st.builds(ActiveTestRequest),
    QuitRequest: st.builds(QuitRequest),
    QueryStoreOneRequest: st.builds(QueryStoreOneRequest, st.none() | group),
    QueryStoreAllRequest: st.builds(QueryStoreAllRequest, st.none() | group),
    QueryFetchOneRequest: st.builds(QueryFetchOneRequest, ident, filename),
    QueryUpdateRequest: st.builds(QueryUpdateRequest, ident, filename),
    QueryFetchAllRequest: st.builds(QueryFetchAllRequest, ident, filename),
    ListAllGroupsRequest: st.builds(ListAllGroupsRequest),
    ListOneGroupRequest: st.builds(ListOneGroupRequest, ident),
    ListStorageRequest: st.builds(ListStorageRequest, ident, st.none() | group),
    DownloadFileRequest: st.builds(DownloadFileRequest, ident, filename, size, size),
    DeleteFileRequest: st.builds(DeleteFileRequest, ident, filename),
    SetMetadataRequest: st.builds(SetMetadataRequest, ident, filename, metadata, st.sampled_from(MetadataFlag)),
    GetMetadataRequest: st.builds(GetMetadataRequest, ident, filename),
    QueryFileInfoRequest: st.builds(QueryFileInfoRequest, ident, filename, flags),
    TruncateFileRequest: st.builds(TruncateFileRequest, filename, size),
    RegenerateAppenderFilenameRequest: st.builds(RegenerateAppenderFilenameRequest, filename),
    StorageJoinRequest: st.builds(
        StorageJoinRequest, ident, ident, port, size, size, int64, size, size, st.text(GRAPHIC, max_size=8),
        st.booleans(), status, ip46, st.lists(tracker, max_size=3).map(tuple),
    ),
    BeatRequest: st.builds(BeatRequest, st.none() | stats),
    ReportDiskUsageRequest: st.builds(
        ReportDiskUsageRequest, st.lists(st.builds(DiskUsage, size, size), min_size=1, max_size=4).map(tuple)
    ),
    ReportTrunkFreeRequest: st.builds(ReportTrunkFreeRequest, size),
    DeleteStorageRequest: st.builds(DeleteStorageRequest, ident, st.text(GRAPHIC, min_size=1, max_size=45)),
    SyncReportRequest: st.builds(
        SyncReportRequest, st.lists(st.builds(SyncProgress, ident, u32), max_size=4).map(tuple)
    ),
    SyncSrcRequest: st.builds(SyncSrcRequest, ident, ident),
    SyncDestRequest: st.builds(SyncDestRequest),
    SyncNotifyRequest: st.builds(SyncNotifyRequest, ident, size),
    ReportStatusRequest: st.builds(ReportStatusRequest, ident, brief),
    ParameterRequest: st.builds(ParameterRequest),
    SyncUpdateFileRequest: st.builds(SyncUpdateFileRequest, u32, ident, filename, metadata),
    SyncTruncateFileRequest: st.builds(SyncTruncateFileRequest, u32, ident, filename, size, size),
    SyncDeleteFileRequest: st.builds(SyncDeleteFileRequest, u32, ident, filename),
    SyncRenameFileRequest: st.builds(SyncRenameFileRequest, u32, ident, filename, filename),
    SyncCreateLinkRequest: st.builds(SyncCreateLinkRequest, u32, ident, filename, filename),
}

data = st.binary(max_size=64)
STREAMED: dict[type, Any] = {
    UploadFileRequest: st.tuples(st.integers(0, 255), ext, data).map(
        lambda t: (UploadFileRequest(t[0], len(t[2]), t[1]), t[2])
    ),
    UploadAppenderFileRequest: st.tuples(st.integers(0, 255), ext, data).map(
        lambda t: (UploadAppenderFileRequest(t[0], len(t[2]), t[1]), t[2])
    ),
    UploadSlaveFileRequest: st.tuples(filename, st.text(EXT_CHARS, min_size=1, max_size=16), ext, data).map(
        lambda t: (UploadSlaveFileRequest(t[0], t[1], len(t[3]), t[2]), t[3])
    ),
    AppendFileRequest: st.tuples(filename, data).map(lambda t: (AppendFileRequest(t[0], len(t[1])), t[1])),
    ModifyFileRequest: st.tuples(filename, size, data).map(
        lambda t: (ModifyFileRequest(t[0], t[1], len(t[2])), t[2])
    ),
    SyncCreateFileRequest: st.tuples(u32, ident, filename, data).map(
        lambda t: (SyncCreateFileRequest(t[0], t[1], t[2], len(t[3])), t[3])
    ),
    SyncAppendFileRequest: st.tuples(u32, ident, filename, size, data).map(
        lambda t: (SyncAppendFileRequest(t[0], t[1], t[2], t[3], len(t[4])), t[4])
    ),
    SyncModifyFileRequest: st.tuples(u32, ident, filename, size, data).map(
        lambda t: (SyncModifyFileRequest(t[0], t[1], t[2], t[3], len(t[4])), t[4])
    ),
}


def group_stat(layout: StatLayout) -> Any:
    common = [ident, *([int64] * 9)]
    if layout is StatLayout.V6_15:
        return st.builds(GroupStat, *common, reserved_mb=int64, readable_count=int64, writable_count=int64)
    return st.builds(GroupStat, *common, storage_http_port=int64, active_count=int64)


def storage_stat(layout: StatLayout) -> Any:
    version = st.text(GRAPHIC, max_size=8 if layout is StatLayout.V6_15 else 6)
    common = [status, ident, ip16, ident, version, *([int64] * 9), stats, st.booleans()]
    if layout is StatLayout.V6_15:
        return st.builds(StorageStat, *common, rw_mode=rw_mode, reserved_mb=int64)
    return st.builds(StorageStat, *common, domain_name=st.text(GRAPHIC, max_size=128), storage_http_port=int64)


def replies(layout: StatLayout) -> list[tuple[Command, Any]]:
    servers = st.lists(st.builds(Address, ip15, port), min_size=1, max_size=4).map(tuple)
    return [
        (Command.QUERY_STORE_WITH_GROUP_ONE, st.builds(StoreTargetReply, ident, ip15, port, st.integers(0, 255))),
        (Command.QUERY_STORE_WITH_GROUP_ALL, st.builds(StoreTargetsReply, ident, servers, st.integers(0, 255))),
        (Command.QUERY_UPDATE, st.builds(FetchTargetReply, ident, ip15, port)),
        (Command.QUERY_FETCH_ALL, st.builds(FetchTargetsReply, ident, port, st.lists(ip15, min_size=1).map(tuple))),
        (Command.UPLOAD_SLAVE_FILE, st.builds(FileIdReply, ident, filename)),
        (Command.DOWNLOAD_FILE, st.builds(DownloadReply, data)),
        (Command.GET_METADATA, st.builds(MetadataReply, metadata)),
        (Command.QUERY_FILE_INFO, st.builds(FileInfoReply, size, size, u32, ip16)),
        (Command.STORAGE_JOIN, st.builds(StorageJoinReply, status, ident)),
        (Command.STORAGE_BEAT, st.builds(TrackerChangesReply, change_flags, st.lists(brief, max_size=3).map(tuple))),
        (Command.STORAGE_SYNC_SRC_REQ, st.just(SyncSourceReply()) | st.builds(SyncSourceReply, ident, size)),
        (Command.STORAGE_PARAMETER_REQ, st.builds(ParameterReply, st.lists(param, max_size=4).map(tuple))),
        (
            Command.SERVER_LIST_ALL_GROUPS,
            st.builds(ListGroupsReply, st.lists(group_stat(layout), max_size=3).map(tuple), st.just(layout)),
        ),
        (
            Command.SERVER_LIST_STORAGE,
            st.builds(ListStoragesReply, st.lists(storage_stat(layout), max_size=2).map(tuple), st.just(layout)),
        ),
    ]


FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REPLY_CASES = [(layout, cmd, strategy) for layout in StatLayout for cmd, strategy in replies(layout)]


@pytest.mark.parametrize("cls", list(REQUESTS), ids=lambda c: c.__name__)
@FAST
@given(data=st.data())
def test_request_round_trip(cls: type, data: st.DataObject) -> None:
    message = data.draw(REQUESTS[cls])
    frame = message.encode()
    assert parse_request(frame[8], frame[10:], frame[9]) == message


def test_every_request_command_is_covered() -> None:
    covered = {c for c in Command if c != Command.RESPONSE}
    drawn = {getattr(cls, "COMMAND", None) for cls in [*REQUESTS, *STREAMED]} - {None}
    drawn |= {101, 104, 106, 107}  # the two query classes whose command depends on the group
    assert drawn == covered


@pytest.mark.parametrize("cls", list(STREAMED), ids=lambda c: c.__name__)
@FAST
@given(data=st.data())
def test_streamed_round_trip(cls: type, data: st.DataObject) -> None:
    head, payload = data.draw(STREAMED[cls])
    frame = head.encode(payload)
    assert parse_request(frame[8], frame[10:]) == RequestWithData(head, payload)


@pytest.mark.parametrize(
    ("layout", "cmd", "strategy"), REPLY_CASES, ids=[f"{lay.value}-{cmd.name}" for lay, cmd, _ in REPLY_CASES]
)
@FAST
@given(data=st.data())
def test_reply_round_trip(layout: StatLayout, cmd: Command, strategy: Any, data: st.DataObject) -> None:
    message = data.draw(strategy)
    frame = message.encode()
    assert parse_reply(cmd, frame[10:], layout) == message
