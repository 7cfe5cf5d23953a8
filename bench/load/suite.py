"""``python -m bench.load.suite``: the cluster load measurements recorded in ``bench/results/cluster.*``.

Each configuration runs ``--repeat`` times (3 by default), each on a freshly spawned local tracker
and storage, and the medians are kept.  Writes ``cluster.json`` (every run and the medians) and
``cluster.md`` (the median tables and the targets) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cli import machine, main
from .report import OpSummary, format_markdown

#: (label, arguments) of each configuration; the size, sync mode, connections and query mode vary.
CONFIGURATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("4 KiB, 1 connection, sync none, one query", ("-s", "4K", "-c", "1", "--sync-mode", "none", "--query", "once")),
    ("4 KiB, 1 connection, sync none, a query per file", ("-s", "4K", "-c", "1", "--sync-mode", "none")),
    (
        "4 KiB, 1 connection, sync always, one query",
        ("-s", "4K", "-c", "1", "--sync-mode", "always", "--query", "once"),
    ),
    ("4 KiB, 1 connection, sync always, a query per file", ("-s", "4K", "-c", "1", "--sync-mode", "always")),
    ("4 KiB, 4 connections, sync none, one query", ("-s", "4K", "-c", "4", "--sync-mode", "none", "--query", "once")),
    ("4 KiB, 4 connections, sync none, a query per file", ("-s", "4K", "-c", "4", "--sync-mode", "none")),
    (
        "4 KiB, 4 connections, sync always, one query",
        ("-s", "4K", "-c", "4", "--sync-mode", "always", "--query", "once"),
    ),
    ("1 KiB, 1 connection, sync none, one query", ("-s", "1K", "-c", "1", "--sync-mode", "none", "--query", "once")),
    ("64 KiB, 1 connection, sync none, one query", ("-s", "64K", "-c", "1", "--sync-mode", "none", "--query", "once")),
)

#: The targets: one connection, 4 KiB, storage requests only.
TARGETS = {"upload": 10_000, "download": 20_000}
TARGET_LABEL = CONFIGURATIONS[0][0]


def run_configuration(label: str, args: Sequence[str], count: int, repeat: int) -> dict[str, Any]:
    argv = ["--spawn", "-n", str(count), "--repeat", str(repeat), "--phases", "upload,download,delete", *args]
    print(f"== {label}: python -m bench.load {' '.join(argv)}", flush=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_before = [round(value, 2) for value in os.getloadavg()]
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run.json"
        code = main([*argv, "--json", str(out)])
        if not out.exists():  # the local cluster did not start
            raise SystemExit(f"{label}: no results (exit code {code})")
        document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    document["label"] = label
    document["command"] = "python -m bench.load " + " ".join(argv)
    document["exit_code"] = code
    # Other processes on the machine disturb the figures: the load average around the runs shows how much.
    document["started"] = started
    document["loadavg_before"] = load_before
    document["loadavg_after"] = document["machine"]["loadavg"]
    return document


def targets_markdown(measurements: Sequence[dict[str, Any]]) -> str:
    """The targets against the medians of the first configuration."""
    lines = ["| target | measured (median) | met? |", "|---|--:|---|"]
    first = next(m for m in measurements if m["label"] == TARGET_LABEL)
    for op, target in TARGETS.items():
        line = next(r for r in first["results"] if r["op"] == op)
        met = "yes" if line["files_per_s"] >= target else "no"
        lines.append(
            f"| {op}s/s, 4 KiB, 1 connection, storage only: >= {target:,} | {line['files_per_s']:,.0f} | {met} |"
        )
    return "\n".join(lines)


def markdown(measurements: Sequence[dict[str, Any]], host: dict[str, Any]) -> str:
    out = [
        "# Cluster load: medians",
        "",
        f"Machine: {host['nproc']} CPUs ({host['cpu']}), Python {host['python']}, "
        f"uvloop {'yes' if host['uvloop'] else 'no'}, {host['platform']}.",
        "",
        targets_markdown(measurements),
        "",
    ]
    for measurement in measurements:
        lines = [OpSummary(**line) for line in measurement["results"]]
        when = f"Load average {measurement['machine']['loadavg'][0]} at the end."
        if "started" in measurement:
            when = (
                f"Started {measurement['started']}; load average {measurement['loadavg_before'][0]} before, "
                f"{measurement['loadavg_after'][0]} after."
            )
        out += [
            f"## {measurement['label']}",
            "",
            f"`{measurement['command']}`",
            "",
            when,
            "",
            format_markdown(lines),
            "",
            f"Each run, files/s: {run_ranges(measurement)}.",
            "",
        ]
    return "\n".join(out)


def run_ranges(measurement: dict[str, Any]) -> str:
    """The storage lines' files/s in every run, to show the spread behind each median."""
    parts = []
    for op in ("upload", "download", "delete"):
        rates = [line["files_per_s"] for run in measurement["runs"] for line in run if line["op"] == op]
        if rates:
            parts.append(f"{op} " + " / ".join(f"{rate:,.0f}" for rate in rates))
    return "; ".join(parts)


def main_suite(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load.suite", description=__doc__)
    parser.add_argument("-n", "--count", type=int, default=50_000, help="files per phase (default 50000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration (default 3)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where cluster.json/.md go")
    parser.add_argument("--only", type=int, nargs="*", help="run only these configurations (0-based)")
    parser.add_argument(
        "--merge", action="store_true", help="replace only the configurations run in an existing cluster.json"
    )
    parser.add_argument("--render", action="store_true", help="only rewrite cluster.md from cluster.json")
    args = parser.parse_args(argv)
    if args.render:
        document = json.loads((args.out / "cluster.json").read_text(encoding="utf-8"))
        (args.out / "cluster.md").write_text(markdown(document["measurements"], document["machine"]), encoding="utf-8")
        return 0
    host = machine()
    chosen = [c for i, c in enumerate(CONFIGURATIONS) if args.only is None or i in args.only]
    measurements = [run_configuration(label, config, args.count, args.repeat) for label, config in chosen]
    if args.merge and (args.out / "cluster.json").exists():
        previous = json.loads((args.out / "cluster.json").read_text(encoding="utf-8"))["measurements"]
        fresh = {m["label"]: m for m in measurements}
        old = {m["label"]: m for m in previous if m["label"] not in fresh}
        order = [label for label, _ in CONFIGURATIONS]
        measurements = sorted([*old.values(), *fresh.values()], key=lambda m: order.index(m["label"]))
    host["loadavg_end"] = machine()["loadavg"]
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"machine": host, "count": args.count, "repeat": args.repeat, "measurements": measurements}
    (args.out / "cluster.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if any(m["label"] == TARGET_LABEL for m in measurements):
        (args.out / "cluster.md").write_text(markdown(measurements, host), encoding="utf-8")
    return 1 if any(m["exit_code"] for m in measurements) else 0


if __name__ == "__main__":
    sys.exit(main_suite())
