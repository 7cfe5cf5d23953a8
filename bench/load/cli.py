"""``python -m bench.load``: the command line, and running the workers (in-process or one process each).

With one connection the worker runs in this process.  With more, each connection is a separate
process (``spawn`` start method), so that the client is not held to one core by the GIL; they wait
at a barrier before each phase, so the phases overlap exactly, and their clocks
(``perf_counter_ns``, the system's monotonic clock) are comparable.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import platform
import re
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from .report import OpSummary, error_messages, format_table, median_lines, summarize, warmup_errors
from .spawn import SYNC_MODES, LocalCluster
from .wire import parse_address
from .worker import PHASES, QUERY_MODES, LoadConfig, PhaseRecord, WorkerResult, run_worker

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """``4096``, ``4K``, ``1M``, ``64KiB``: bytes (K, M, G are powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 4096, 4K, 1M)")
    size = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if size < 1:
        raise argparse.ArgumentTypeError("the size must be at least 1 byte (FastDFS cannot download empty files)")
    return size


def parse_phases(text: str) -> tuple[str, ...]:
    phases = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [phase for phase in phases if phase not in PHASES]
    if unknown or not phases:
        raise argparse.ArgumentTypeError(f"phases are a comma-separated list of {', '.join(PHASES)}")
    if len(set(phases)) != len(phases):
        raise argparse.ArgumentTypeError("a phase may appear only once")
    if "upload" not in phases or phases[0] != "upload":
        raise argparse.ArgumentTypeError("the phases start with upload: the others work on its files")
    return phases


def parse_setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    return key.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="Load generator for FastDFS-compatible clusters: N uploads, then downloads, of S bytes "
        "over C connections; files/s, MB/s and latency percentiles per request type.",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--tracker", type=parse_address, metavar="HOST:PORT", help="the tracker to load")
    target.add_argument("--spawn", action="store_true", help="start a local tracker and storage, load them, stop them")
    parser.add_argument("-n", "--count", type=int, default=10_000, help="files per phase (default 10000)")
    parser.add_argument("-s", "--size", type=parse_size, default=4096, help="file size: 4096, 4K, 1M (default 4K)")
    parser.add_argument("-c", "--connections", type=int, default=1, help="connections, one process each (default 1)")
    parser.add_argument("--group", default=None, help="upload to this group (default: the tracker chooses)")
    parser.add_argument(
        "--phases", type=parse_phases, default=("upload", "download"), help="default upload,download; or ...,delete"
    )
    parser.add_argument(
        "--query",
        choices=QUERY_MODES,
        default="each",
        help="each: a tracker query per file, timed apart; once: one query, then all to that storage",
    )
    parser.add_argument("--warmup", type=int, default=500, help="untimed uploads+downloads first (default 500)")
    parser.add_argument("--verify-every", type=int, default=16, help="compare every n-th download byte for byte")
    parser.add_argument("--timeout", type=float, default=30.0, help="socket timeout, seconds (default 30)")
    parser.add_argument("--repeat", type=int, default=1, help="runs (fresh cluster each with --spawn); medians")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the configuration, machine and results")
    spawn = parser.add_argument_group("--spawn")
    spawn.add_argument("--sync-mode", choices=SYNC_MODES, default="none", help="the storage's sync_mode")
    spawn.add_argument(
        "--storage-conf",
        type=parse_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more storage.conf settings (repeatable)",
    )
    spawn.add_argument("--spawn-dir", default=None, help="where the throwaway cluster lives (default: $TMPDIR)")
    return parser


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "uvloop": importlib.util.find_spec("uvloop") is not None,
        "platform": platform.platform(),
        "loadavg": [round(value, 2) for value in os.getloadavg()],
    }


def _child(config: LoadConfig, index: int, barrier: Any, conn: Connection) -> None:
    try:
        conn.send(run_worker(config, index, barrier))
    except BaseException as exc:  # reported to the parent, which counts the worker's files as errors
        barrier.abort()
        conn.send(exc)
    finally:
        conn.close()


def run_workers(config: LoadConfig) -> list[WorkerResult]:
    """Run the load: in this process for one connection, else one process per connection."""
    if config.connections == 1:
        return [run_worker(config, 0)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(config.connections)
    children = []
    for index in range(config.connections):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(config, index, barrier, sender), daemon=True)
        process.start()
        sender.close()
        children.append((index, process, receiver))
    results: list[WorkerResult] = []
    pending = {receiver: (index, process) for index, process, receiver in children}
    while pending:
        for ready in wait(list(pending)):
            assert isinstance(ready, Connection)
            index, process = pending.pop(ready)
            try:
                outcome = ready.recv()
            except EOFError:
                outcome = RuntimeError(f"worker {index} exited with code {process.exitcode} before reporting")
            if isinstance(outcome, BaseException):
                barrier.abort()  # the others must not wait for it at the next phase
                outcome = _failed_worker(config, index, outcome)
            results.append(outcome)
    for _, process, _ in children:
        process.join()
    return sorted(results, key=lambda result: result.index)


def _failed_worker(config: LoadConfig, index: int, exc: BaseException) -> WorkerResult:
    """A worker that died: all its files count as errors of the first phase."""
    record = PhaseRecord(config.phases[0])
    op = record.op(config.phases[0])
    op.failed(f"worker {index} failed: {exc!r}")
    op.errors = max(1, config.share(index))
    return WorkerResult(index, PhaseRecord("warmup"), [record])


def run_once(config: LoadConfig) -> tuple[list[OpSummary], int, list[str]]:
    """One run: the table lines, the error count (warm-up included) and the first error messages."""
    results = run_workers(config)
    lines = summarize(config, results)
    errors = sum(line.errors for line in lines if "+" not in line.op) + warmup_errors(results)
    return lines, errors, error_messages(results)


class ClusterStartError(Exception):
    """The local cluster of ``--spawn`` did not start."""


def _load_config(
    args: argparse.Namespace, tracker: tuple[str, int], server_pids: tuple[tuple[str, int], ...]
) -> LoadConfig:
    return LoadConfig(
        tracker=tracker,
        count=args.count,
        size=args.size,
        connections=args.connections,
        group=args.group,
        phases=args.phases,
        query=args.query,
        warmup=args.warmup,
        timeout=args.timeout,
        verify_every=args.verify_every,
        server_pids=server_pids,
    )


def run_from_args(args: argparse.Namespace) -> tuple[list[OpSummary], int, list[str]]:
    """One run as the options say: against ``--tracker``, or a fresh local cluster with ``--spawn``."""
    if not args.spawn:
        return run_once(_load_config(args, args.tracker, ()))
    cluster = LocalCluster(args.sync_mode, args.group or "group1", dict(args.storage_conf), args.spawn_dir)
    try:
        cluster.start()
    except (RuntimeError, OSError) as exc:
        cluster.stop()
        raise ClusterStartError(str(exc)) from exc
    try:
        lines, errors, messages = run_once(_load_config(args, parse_address(cluster.tracker_address), cluster.pids()))
    finally:
        codes = cluster.stop()
    if any(codes):
        messages.append(f"a spawned server exited with code {codes}")
        errors += 1
    return lines, errors, messages


def _document(
    args: argparse.Namespace, argv: Sequence[str] | None, runs: list[list[OpSummary]], errors: int, messages: list[str]
) -> dict[str, Any]:
    """What ``--json`` writes."""
    medians = median_lines(runs) if len(runs) > 1 else runs[0]
    return {
        "command": "python -m bench.load " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": {
            "tracker": "spawned" if args.spawn else f"{args.tracker[0]}:{args.tracker[1]}",
            "sync_mode": args.sync_mode if args.spawn else None,
            "count": args.count,
            "size": args.size,
            "connections": args.connections,
            "group": args.group,
            "phases": list(args.phases),
            "query": args.query,
            "warmup": args.warmup,
            "repeat": args.repeat,
        },
        "machine": machine(),
        "runs": [[line.as_dict() for line in lines] for lines in runs],
        "results": [line.as_dict() for line in medians],
        "errors": errors,
        "error_messages": messages[:20],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load; 0 if every request succeeded and every download was the right file, 1 if not, 2 if
    it could not run."""
    args = build_parser().parse_args(argv)
    for name in ("count", "connections", "repeat"):
        if getattr(args, name) < 1:
            print(f"--{name} must be at least 1", file=sys.stderr)
            return 2
    runs: list[list[OpSummary]] = []
    total_errors = 0
    messages: list[str] = []
    for run in range(args.repeat):
        try:
            lines, errors, run_messages = run_from_args(args)
        except ClusterStartError as exc:
            print(f"could not start the local cluster: {exc}", file=sys.stderr)
            return 2
        runs.append(lines)
        total_errors += errors
        messages.extend(run_messages)
        if args.repeat > 1:
            print(f"run {run + 1} of {args.repeat}")
        print(format_table(lines), flush=True)
    if args.repeat > 1:
        print(f"medians of {args.repeat} runs")
        print(format_table(median_lines(runs)))
    for message in messages[:20]:
        print(f"error: {message}", file=sys.stderr)
    if total_errors:
        print(f"{total_errors} errors", file=sys.stderr)
    if args.json is not None:
        document = _document(args, argv, runs, total_errors, messages)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 1 if total_errors else 0
