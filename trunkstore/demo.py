"""A short tour of the engine: ``python -m trunkstore.demo [DIR]`` (what ``make run`` starts)."""

from __future__ import annotations

import os
import sys
import tempfile
import time

from trunkstore import Store, parse_file_id


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = args[0] if args else tempfile.mkdtemp(prefix="trunkstore-demo-")
    print(f"store at {root}")
    with Store(root, group_name="group1", storage_ip="127.0.0.1") as store:
        thumb = os.urandom(4096)
        file_id = store.put(thumb, ext="jpg")
        parsed = parse_file_id(file_id)
        print(f"put 4 KiB thumbnail  -> {file_id}")
        print(f"  kind {parsed.kind}, trunk {parsed.trunk}, crc32 {parsed.crc32:#010x}")
        assert store.get(file_id) == thumb

        count = 20_000
        payloads = [os.urandom(1024) for _ in range(count)]
        started = time.perf_counter()
        ids = store.put_many((data, "png") for data in payloads)
        elapsed = time.perf_counter() - started
        print(f"put_many {count} x 1 KiB (one durable commit) in {elapsed:.2f} s: {count / elapsed:,.0f} files/s")
        started = time.perf_counter()
        for file_id_n, data in zip(ids, payloads, strict=True):
            assert store.get(file_id_n) == data
        elapsed = time.perf_counter() - started
        print(f"read them back byte-exact in {elapsed:.2f} s: {count / elapsed:,.0f} files/s")

        big = store.put(os.urandom(20 << 20), ext="bin")
        print(f"put 20 MiB file      -> {big} (plain file, {store.stat(big).kind})")
        slave = store.put_slave(file_id, "_150x150", os.urandom(512), "jpg")
        print(f"put slave            -> {slave}")
        store.set_meta(file_id, {"width": "1024", "height": "768"})
        print(f"metadata             -> {store.get_meta(file_id)}")
        appender = store.put_appender(b"log line 1\n", "log")
        store.append(appender, b"log line 2\n")
        print(f"appender file        -> {appender}: {store.get(appender)!r}")

        for victim in ids[::2]:
            store.delete(victim)
        stats = store.stats()
        print(
            f"deleted half: {stats.trunk_containers} container(s), "
            f"{stats.trunk_free_extents} free extent(s) after merging"
        )
        report = store.check()
        print(f"check(): {'ok' if report.ok else report.problems} ({report.slots_checked} slots verified)")
        scrub = store.scrub()
        print(f"scrub(): {scrub.files_checked} files, {len(scrub.corrupt)} corrupt")
    print("\nUse it from Python:\n    from trunkstore import Store\n    with Store('/data/photos') as store:")
    print("        file_id = store.put(jpeg_bytes, ext='jpg')\n        data = store.get(file_id)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
