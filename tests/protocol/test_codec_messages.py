"""Typed messages: exact layouts, FastDFS wire captures, and validation."""

from __future__ import annotations

import struct

import pytest
from protocol_samples import NAME, REPLIES, REQUESTS, STATS, STREAMED_SAMPLES, ReplySample, StreamedSample

from cluster.protocol import (
    STORE_PATH_ANY,
    Address,
    Command,
    DeleteStorageRequest,
    DownloadFileRequest,
    FetchTargetReply,
    FetchTargetsReply,
    FileIdReply,
    FileInfoFlag,
    FileInfoReply,
    GroupStat,
    ListGroupsReply,
    ListStorageRequest,
    ListStoragesReply,
    ProtocolError,
    QueryFileInfoRequest,
    QueryStoreOneRequest,
    Request,
    RequestWithData,
    SetMetadataRequest,
    StatLayout,
    StorageJoinRequest,
    StorageStat,
    StorageStatus,
    StoreTargetReply,
    StoreTargetsReply,
    UploadFileRequest,
    UploadSlaveFileRequest,
    group_stat_size,
    parse_reply,
    parse_request,
    storage_stat_size,
)
from cluster.protocol.peer_messages import BRIEF, JOIN
from cluster.protocol.stats import STATS as STATS_BLOCK


def body_of(frame: bytes) -> bytes:
    return frame[10:]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_request_round_trip(request_: Request) -> None:
    frame = request_.encode()
    assert struct.unpack("!q", frame[:8])[0] == len(frame) - 10
    assert frame[8] == request_.command
    assert parse_request(frame[8], body_of(frame), frame[9]) == request_


@pytest.mark.parametrize("sample", STREAMED_SAMPLES, ids=lambda s: type(s.request).__name__)
def test_streamed_round_trip(sample: StreamedSample) -> None:
    frame = sample.encode()
    parsed = parse_request(frame[8], body_of(frame))
    assert parsed == RequestWithData(sample.request, sample.data)
    assert parsed.encode() == frame


@pytest.mark.parametrize("sample", REPLIES, ids=lambda s: f"{s.request_cmd.name}-{type(s.reply).__name__}")
def test_reply_round_trip(sample: ReplySample) -> None:
    frame = sample.reply.encode()
    assert frame[8:10] == b"\x64\x00"
    assert parse_reply(sample.request_cmd, body_of(frame), sample.layout) == sample.reply


def test_upload_wire_example() -> None:
    data = bytes(range(256)) * 19 + bytes(136)
    assert len(data) == 5000
    frame = UploadFileRequest(0, 5000, "txt").encode(data)
    assert frame[:25] == bytes.fromhex(
        "00 00 00 00 00 00 13 97 0b 00 00 00 00 00 00 00 00 13 88 74 78 74 00 00 00"
    )
    assert frame[25:] == data
    reply = bytes.fromhex("00 00 00 00 00 00 00 4c 64 00") + b"group1" + bytes(10) + NAME.encode()
    assert FileIdReply("group1", NAME).encode() == reply
    parsed = parse_reply(Command.UPLOAD_FILE, reply[10:])
    assert parsed == FileIdReply("group1", NAME)
    assert isinstance(parsed, FileIdReply) and parsed.file_id == "group1/" + NAME


def test_tracker_store_query_wire_example() -> None:
    assert QueryStoreOneRequest().encode() == bytes.fromhex("00" * 8 + "65 00")
    reply = (
        bytes.fromhex("00 00 00 00 00 00 00 28 64 00")
        + b"group1" + bytes(10)
        + b"127.0.0.1" + bytes(6)
        + bytes.fromhex("00 00 00 00 00 00 59 d8")
        + b"\x00"
    )  # fmt: skip
    assert StoreTargetReply("group1", "127.0.0.1", 23000, 0).encode() == reply
    assert parse_reply(Command.QUERY_STORE_WITHOUT_GROUP_ONE, reply[10:]) == StoreTargetReply(
        "group1", "127.0.0.1", 23000, 0
    )


def test_query_replies_are_exact_sizes() -> None:
    assert len(StoreTargetReply("g", "255.255.255.255", 1, 0).encode_body()) == 40
    assert len(FetchTargetReply("g", "255.255.255.255", 1).encode_body()) == 39
    for bad in (b"\0" * 39, b"\0" * 41):
        with pytest.raises(ProtocolError):
            StoreTargetReply.decode(bad)
    with pytest.raises(ProtocolError):
        FetchTargetReply.decode(b"\0" * 40)


def test_multi_server_replies_layout() -> None:
    body = StoreTargetsReply("g", (Address("1.1.1.1", 1), Address("2.2.2.2", 2)), STORE_PATH_ANY).encode_body()
    assert len(body) == 16 + 2 * 23 + 1 and body[-1] == 0xFF
    body = FetchTargetsReply("g", 23000, ("1.1.1.1", "2.2.2.2", "3.3.3.3")).encode_body()
    assert len(body) == 39 + 2 * 15
    assert body[39:] == b"2.2.2.2" + bytes(8) + b"3.3.3.3" + bytes(8)
    with pytest.raises(ProtocolError):
        StoreTargetsReply.decode(b"g".ljust(16, b"\0") + b"\0")  # no storage
    with pytest.raises(ProtocolError):
        FetchTargetsReply.decode(bytes(39 + 14))


def test_fixed_width_text_fields() -> None:
    # A text that fills its field has no terminator; a longer one is refused.
    assert FetchTargetReply("g" * 16, "255.255.255.255", 1).encode_body()[:31] == b"g" * 16 + b"255.255.255.255"
    with pytest.raises(ProtocolError):
        FetchTargetReply("g" * 17, "1.1.1.1", 1).encode_body()
    with pytest.raises(ProtocolError):
        FetchTargetReply("g", "1111.1111.1111.1", 1).encode_body()
    # Whatever follows the first NUL is ignored, as C does.
    raw = b"g1\0junk".ljust(16, b"\0") + b"1.2.3.4".ljust(15, b"\0") + struct.pack("!q", 80)
    assert FetchTargetReply.decode(raw) == FetchTargetReply("g1", "1.2.3.4", 80)
    with pytest.raises(ProtocolError):
        FetchTargetReply.decode(b"g\xe91".ljust(16, b"\0") + bytes(15) + struct.pack("!q", 80))
    with pytest.raises(ProtocolError):
        FetchTargetReply.decode(b"g1".ljust(16, b"\0") + bytes(15) + struct.pack("!q", 70000))


def test_stat_sizes() -> None:
    assert group_stat_size(StatLayout.V6_10) == 105
    assert group_stat_size(StatLayout.V6_15) == 113
    assert storage_stat_size(StatLayout.V6_10) == 612 == struct.calcsize("!B16s16s128s16s6s10Q4s4s4s42Q?")
    assert storage_stat_size(StatLayout.V6_15) == 487
    assert STATS_BLOCK.size == 348
    assert JOIN.size == 145 and BRIEF.size == 67


def test_storage_stat_v6_10_matches_the_pypi_clients_format() -> None:
    stat = StorageStat(
        StorageStatus.ACTIVE, "s1", "10.0.0.1", src_id="s0", version="6.10", domain_name="d.example",
        join_time=1, up_time=2, total_mb=3, free_mb=4, upload_priority=5, store_path_count=6,
        subdir_count_per_path=7, current_write_path=8, storage_port=9, storage_http_port=10,
        stats=STATS, if_trunk_server=True,
    )  # fmt: skip
    fields = struct.unpack("!B16s16s128s16s6s10Q4s4s4s42Q?", stat.encode(StatLayout.V6_10))
    assert fields[0] == StorageStatus.ACTIVE
    assert fields[1].rstrip(b"\0") == b"s1" and fields[3].rstrip(b"\0") == b"d.example"
    assert fields[5].rstrip(b"\0") == b"6.10"
    assert fields[6:16] == tuple(range(1, 11))
    assert [struct.unpack("!i", f)[0] for f in fields[16:19]] == [1, 2, 3]
    assert fields[19:61] == tuple(range(4, 46))
    assert fields[61] is True


def test_storage_stat_v6_15_layout() -> None:
    stat = StorageStat(StorageStatus.ONLINE, "s1", "10.0.0.1", version="6.15.1", storage_port=23000)
    raw = stat.encode(StatLayout.V6_15)
    assert len(raw) == 487
    assert raw[0] == StorageStatus.ONLINE and raw[1] == 0
    assert raw[18:26] == b"10.0.0.1"
    assert raw[50:58] == b"6.15.1\0\0"
    assert struct.unpack_from("!q", raw, 58 + 9 * 8)[0] == 23000


def test_group_stat_layouts() -> None:
    group = GroupStat("group1", total_mb=1, free_mb=2, reserved_mb=3, trunk_free_mb=4, storage_count=5)
    raw = group.encode(StatLayout.V6_15)
    assert len(raw) == 113 and raw[:17] == b"group1".ljust(17, b"\0")
    assert struct.unpack_from("!5q", raw, 17) == (1, 2, 3, 4, 5)
    raw = group.encode(StatLayout.V6_10)
    assert len(raw) == 105
    assert struct.unpack_from("!4q", raw, 17) == (1, 2, 4, 5)


def test_stat_lists_refuse_ragged_bodies() -> None:
    with pytest.raises(ProtocolError):
        ListGroupsReply.decode(bytes(113), StatLayout.V6_10)
    with pytest.raises(ProtocolError):
        ListStoragesReply.decode(bytes(612), StatLayout.V6_15)
    with pytest.raises(ProtocolError):
        parse_reply(Command.SERVER_LIST_ONE_GROUP, b"", StatLayout.V6_15)
    with pytest.raises(ProtocolError):  # status 0 is INIT, but 8 is no status at all
        StorageStat.decode(b"\x08" + bytes(486), StatLayout.V6_15)


def test_file_info_crc32_is_sign_extended() -> None:
    body = FileInfoReply(1, 2, 0x89ABCDEF, "10.0.0.1").encode_body()
    assert len(body) == 40
    assert body[16:24] == bytes.fromhex("ffffffff89abcdef")
    assert FileInfoReply.decode(body).crc32 == 0x89ABCDEF
    # A sender that does not sign-extend is understood as well.
    zero_extended = body[:16] + bytes.fromhex("0000000089abcdef") + body[24:]
    assert FileInfoReply.decode(zero_extended).crc32 == 0x89ABCDEF
    with pytest.raises(ProtocolError):
        FileInfoReply.decode(body[:16] + bytes.fromhex("0000000189abcdef") + body[24:])


def test_query_file_info_flags_travel_in_the_header() -> None:
    frame = QueryFileInfoRequest("group1", NAME, FileInfoFlag(3)).encode()
    assert frame[9] == 3
    with pytest.raises(ProtocolError):
        parse_request(Command.QUERY_FILE_INFO, frame[10:], 4)


def test_upload_request_validation() -> None:
    body = UploadFileRequest(0, 3, "txt").encode(b"abc")[10:]
    with pytest.raises(ProtocolError):  # file_size != pkg_len - 15
        parse_request(Command.UPLOAD_FILE, body + b"d")
    with pytest.raises(ProtocolError):
        parse_request(Command.UPLOAD_FILE, body[:14])
    for ext in ("toolong", "a b", "a/b", "é"):
        with pytest.raises(ProtocolError):
            UploadFileRequest(0, 0, ext).encode_head()
    with pytest.raises(ProtocolError):
        UploadFileRequest(0, -1, "").encode_head()
    with pytest.raises(ProtocolError):
        UploadFileRequest(256, 0, "").encode_head()
    with pytest.raises(ProtocolError):
        UploadFileRequest(0, 3, "").encode(b"ab")
    with pytest.raises(ProtocolError):
        UploadSlaveFileRequest(NAME, "", 0, "").encode_head()


def test_slave_upload_layout() -> None:
    head = UploadSlaveFileRequest(NAME, "_big", 7, "jpg").encode_head()
    assert struct.unpack_from("!qq16s6s", head, 10) == (len(NAME), 7, b"_big".ljust(16, b"\0"), b"jpg\0\0\0")
    assert head[48:] == NAME.encode()
    assert struct.unpack("!q", head[:8])[0] == 38 + len(NAME) + 7


def test_download_and_metadata_layouts() -> None:
    body = DownloadFileRequest("group1", NAME, 5, 6).encode_body()
    assert body[:32] == struct.pack("!qq16s", 5, 6, b"group1") and body[32:] == NAME.encode()
    body = SetMetadataRequest("group1", NAME, (("b", "2"), ("a", "1"))).encode_body()
    meta = b"a\x021\x01b\x022"
    assert body == struct.pack("!qqc16s", len(NAME), len(meta), b"O", b"group1") + NAME.encode() + meta
    with pytest.raises(ProtocolError):  # flag neither O nor M
        parse_request(Command.SET_METADATA, body[:16] + b"X" + body[17:])
    with pytest.raises(ProtocolError):  # meta_len disagrees with the body
        parse_request(Command.SET_METADATA, body + b"x")


def test_malformed_requests() -> None:
    cases = [
        (Command.QUERY_STORE_WITHOUT_GROUP_ONE, b"group1".ljust(16, b"\0")),
        (Command.QUERY_STORE_WITH_GROUP_ONE, b""),
        (Command.QUERY_FETCH_ONE, b"group1".ljust(16, b"\0")),  # no file name
        (Command.QUERY_FETCH_ONE, b"group1".ljust(16, b"\0") + b"a" * 129),
        (Command.DELETE_FILE, b"group1".ljust(16, b"\0") + b"M00/\x00"),
        (Command.DOWNLOAD_FILE, struct.pack("!qq16s", -1, 0, b"g") + b"f"),
        (Command.TRUNCATE_FILE, struct.pack("!qq", 3, -1) + b"abc"),
        (Command.TRUNCATE_FILE, struct.pack("!qq", 4, 0) + b"abc"),
        (Command.SERVER_LIST_STORAGE, b"g" * 33),
        (Command.ACTIVE_TEST, b"x"),
        (Command.STORAGE_BEAT, bytes(347)),
        (Command.STORAGE_REPORT_DISK_USAGE, b""),
        (Command.STORAGE_REPORT_TRUNK_FREE, bytes(7)),
        (Command.SERVER_DELETE_STORAGE, b"group1".ljust(16, b"\0")),  # names no storage
        (Command.SERVER_DELETE_STORAGE, b"group1".ljust(16, b"\0") + bytes(4)),  # an all-NUL name
        (Command.SERVER_DELETE_STORAGE, b"group1".ljust(16, b"\0") + b"1" * 46),
        (Command.STORAGE_SYNC_REPORT, bytes(21)),
        (Command.STORAGE_JOIN, bytes(144)),
        (Command.RESPONSE, b""),
        (0, b""),
        (255, b""),
    ]
    for cmd, body in cases:
        with pytest.raises(ProtocolError):
            parse_request(cmd, body)


def test_list_storage_id_is_unpadded() -> None:
    body = ListStorageRequest("group1", "10.0.0.1").encode_body()
    assert body == b"group1".ljust(16, b"\0") + b"10.0.0.1"
    padded = body.ljust(32, b"\0")
    assert parse_request(Command.SERVER_LIST_STORAGE, padded) == ListStorageRequest("group1", "10.0.0.1")
    assert parse_request(Command.SERVER_LIST_STORAGE, body[:16] + bytes(16)) == ListStorageRequest("group1")


def test_delete_storage_names_the_storage_unpadded_as_fdfs_monitor_sends_it() -> None:
    body = DeleteStorageRequest("group1", "10.0.0.1").encode_body()
    assert body == b"group1".ljust(16, b"\0") + b"10.0.0.1"
    assert parse_request(Command.SERVER_DELETE_STORAGE, body) == DeleteStorageRequest("group1", "10.0.0.1")
    with pytest.raises(ProtocolError):
        DeleteStorageRequest("group1", "x" * 46).encode_body()
    with pytest.raises(ProtocolError):
        DeleteStorageRequest("group1", "").encode_body()


def test_join_tracker_lines() -> None:
    join = StorageJoinRequest("g", "s1", 23000, 1, 256, trackers=(Address("10.0.0.1", 22122),))
    body = join.encode_body()
    assert len(body) == 145 + len(b"10.0.0.1:22122\n")
    assert body.endswith(b"10.0.0.1:22122\n")
    assert struct.unpack_from("!q", body, 137)[0] == 1
    for tail in (b"10.0.0.1:22122", b"10.0.0.1\n", b"10.0.0.1:x\n", b":1\n", b"a:1\nb:2\n"):
        with pytest.raises(ProtocolError):
            parse_request(Command.STORAGE_JOIN, body[:145] + tail)


def test_reply_without_definition() -> None:
    with pytest.raises(ProtocolError):
        parse_reply(Command.QUIT, b"")
    with pytest.raises(ProtocolError):
        parse_reply(Command.DELETE_FILE, b"x")
