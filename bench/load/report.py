"""Summaries of what the workers measured: rates, percentiles, tables and JSON.

Per phase, one line per kind of request:

* the storage request (``upload``, ``download``, ``delete``): its seconds are the phase's wall time
  less the time the connection spent in tracker queries (the longest over the connections), so its
  files/s is the storage's own rate;
* the tracker query (``query-store``, ``query-fetch``, ``query-update``): its seconds are the time
  spent in queries (the longest over the connections);
* in ``each`` query mode, ``<phase>+query``: the whole phase, wall time, queries included: what a
  client that asks the tracker for every file gets.

``client_cpu_us`` on the storage line: the CPU time the load generator itself spent per file in the
phase (all its processes, queries included).  Compared with the wall time per file it shows how much
of each round trip is the client's.  ``server_cpu_us`` (with ``--spawn``): the storage's CPU time per
file on the storage line, the tracker's per query on the query line.

Percentiles are nearest-rank over every successful request's latency.  MB is 10^6 bytes.
"""

from __future__ import annotations

import math
import statistics
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace

from .worker import QUERY_OP, LoadConfig, PhaseRecord, WorkerResult

STORAGE_OPS = frozenset(QUERY_OP)
#: Fewer requests than this and a server's CPU time per request is not shown: /proc counts CPU time in
#: 10 ms clock ticks, and one query per connection (``--query once``) is lost among the server's beats.
MIN_REQUESTS_FOR_SERVER_CPU = 1000


@dataclass(frozen=True, slots=True)
class OpSummary:
    """One line of the results table."""

    phase: str
    op: str
    files: int
    errors: int
    seconds: float
    files_per_s: float
    mb_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    client_cpu_us: float | None = None
    server_cpu_us: float | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def percentile(ordered: Sequence[int], fraction: float) -> int:
    """Nearest-rank percentile of an ascending sequence (not empty)."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _line(phase: str, op: str, latencies: array[int], errors: int, seconds: float, size: int | None) -> OpSummary:
    files = len(latencies)
    rate = files / seconds if seconds > 0 else 0.0
    mb = rate * size / 1e6 if size is not None else None
    if files:
        ordered = sorted(latencies)
        p50, p99, top = (percentile(ordered, 0.5) / 1e6, percentile(ordered, 0.99) / 1e6, ordered[-1] / 1e6)
        return OpSummary(phase, op, files, errors, seconds, rate, mb, p50, p99, top)
    return OpSummary(phase, op, files, errors, seconds, rate, mb, None, None, None)


def _with_server_cpu(line: OpSummary, records: Sequence[PhaseRecord], role: str) -> OpSummary:
    used = [record.server_cpu_ns[role] for record in records if role in record.server_cpu_ns]
    if not used or line.files < MIN_REQUESTS_FOR_SERVER_CPU:
        return line
    return replace(line, server_cpu_us=sum(used) / line.files / 1e3)


def summarize(config: LoadConfig, results: Sequence[WorkerResult]) -> list[OpSummary]:
    """Merge the workers' records phase by phase into table lines."""
    lines: list[OpSummary] = []
    for position, phase in enumerate(config.phases):
        records = [result.phases[position] for result in results if len(result.phases) > position]
        if not records:
            continue
        wall = (max(r.end_ns for r in records) - min(r.start_ns for r in records)) / 1e9
        query_op = QUERY_OP[phase]
        query_busy = [sum(r.ops[query_op].latencies) / 1e9 if query_op in r.ops else 0.0 for r in records]
        storage_busy = max((r.end_ns - r.start_ns) / 1e9 - busy for r, busy in zip(records, query_busy, strict=True))
        merged: dict[str, tuple[array[int], int]] = {}
        for record in records:
            for name, op in record.ops.items():
                samples, errors = merged.get(name, (array("q"), 0))
                samples.extend(op.latencies)
                merged[name] = (samples, errors + op.errors)
        query_samples, query_errors = merged.get(query_op, (array("q"), 0))
        storage_samples, storage_errors = merged.get(phase, (array("q"), 0))
        query_line = _line(phase, query_op, query_samples, query_errors, max(query_busy), None)
        lines.append(_with_server_cpu(query_line, records, "tracker"))
        storage_line = _line(phase, phase, storage_samples, storage_errors, storage_busy, config.size)
        if storage_samples:
            cpu_us = sum(r.cpu_ns for r in records) / len(storage_samples) / 1e3
            storage_line = replace(storage_line, client_cpu_us=cpu_us)
        lines.append(_with_server_cpu(storage_line, records, "storage"))
        if config.query == "each":
            total = OpSummary(
                phase,
                f"{phase}+query",
                len(storage_samples),
                storage_errors + query_errors,
                wall,
                len(storage_samples) / wall if wall > 0 else 0.0,
                len(storage_samples) * config.size / wall / 1e6 if wall > 0 else 0.0,
                None,
                None,
                None,
            )
            lines.append(total)
    return lines


def error_messages(results: Iterable[WorkerResult]) -> list[str]:
    """The first error messages of every worker, warm-up included."""
    messages = []
    for result in results:
        for record in [result.warmup, *result.phases]:
            for op in record.ops.values():
                messages.extend(f"{record.phase}/{op.op}: {text}" for text in op.messages)
    return messages


def warmup_errors(results: Iterable[WorkerResult]) -> int:
    return sum(op.errors for result in results for op in result.warmup.ops.values())


def median_lines(runs: Sequence[Sequence[OpSummary]]) -> list[OpSummary]:
    """Line by line, the median of each figure over several runs of the same configuration (errors:
    the sum)."""
    groups: dict[tuple[str, str], list[OpSummary]] = {}
    for run in runs:  # by (phase, op): a run whose worker died may lack some lines
        for line in run:
            groups.setdefault((line.phase, line.op), []).append(line)
    medians = []
    for group in groups.values():
        first = group[0]
        values: dict[str, object] = {"phase": first.phase, "op": first.op}
        for item in fields(OpSummary):
            name = item.name
            if name in values:
                continue
            column = [getattr(line, name) for line in group]
            if name == "errors":
                values[name] = sum(column)
            elif all(value is None for value in column):
                values[name] = None
            else:
                values[name] = statistics.median(value for value in column if value is not None)
        medians.append(OpSummary(**values))  # type: ignore[arg-type]
    return medians


HEADINGS = (
    "phase",
    "op",
    "files",
    "seconds",
    "files/s",
    "MB/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "errors",
    "client µs",
    "server µs",
)


def _cells(line: OpSummary) -> tuple[str, ...]:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    return (
        line.phase,
        line.op,
        f"{line.files:,.0f}",
        f"{line.seconds:.3f}",
        f"{line.files_per_s:,.0f}",
        "-" if line.mb_per_s is None else f"{line.mb_per_s:.1f}",
        ms(line.p50_ms),
        ms(line.p99_ms),
        ms(line.max_ms),
        f"{line.errors:,}",
        "-" if line.client_cpu_us is None else f"{line.client_cpu_us:.1f}",
        "-" if line.server_cpu_us is None or line.files < MIN_REQUESTS_FOR_SERVER_CPU else f"{line.server_cpu_us:.1f}",
    )


def format_table(lines: Sequence[OpSummary]) -> str:
    """A plain-text table, numbers right-aligned."""
    rows = [HEADINGS, *(_cells(line) for line in lines)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(HEADINGS))]
    out = []
    for row in rows:
        cells = [cell.ljust(w) if c < 2 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def format_markdown(lines: Sequence[OpSummary]) -> str:
    """The same table in Markdown."""
    out = ["| " + " | ".join(HEADINGS) + " |", "|---|---|" + "--:|" * (len(HEADINGS) - 2)]
    out.extend("| " + " | ".join(_cells(line)) + " |" for line in lines)
    return "\n".join(out)
