"""Turn a pytest-benchmark JSON file of ``bench/test_engine_bench.py`` into markdown tables and a plot.

    python -m bench.report [bench/results/engine.json] [--png bench/results/engine.png] [--md FILE]

Throughput is ``ops_per_round / median round time``; p50 / p99 come from the per-operation sampler.
The project's targets are evaluated and printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

WORKLOADS = ("put", "get", "delete", "churn", "durable put")
SIZE_LABELS = {1024: "1 KiB", 4096: "4 KiB", 65536: "64 KiB"}
LABELS = {
    ("trunkstore", "batch64"): "trunkstore put_many x64",
    ("trunkstore", "threads8"): "trunkstore 8 threads",
    ("trunkstore", "single"): "trunkstore one at a time",
    ("files", "single"): "files, fsync per file",
    ("sqlite", "single"): "sqlite FULL, txn per put",
    ("sqlite", "batch64"): "sqlite FULL, 64 per txn",
    ("trunkstore", "random, ID cache off"): "trunkstore, ID cache off",
    ("disk", "ceiling"): "disk ceiling: overwrite x64 + fdatasync",
}
COLORS = {
    "trunkstore": "#1f77b4",
    "trunkstore put_many x64": "#1f77b4",
    "trunkstore 8 threads": "#6baed6",
    "trunkstore one at a time": "#c6dbef",
    "trunkstore, ID cache off": "#6baed6",
    "files": "#ff7f0e",
    "files, fsync per file": "#ff7f0e",
    "sqlite": "#2ca02c",
    "sqlite FULL, txn per put": "#2ca02c",
    "sqlite FULL, 64 per txn": "#98df8a",
    "disk ceiling: overwrite x64 + fdatasync": "#7f7f7f",
}


@dataclass(frozen=True, slots=True)
class Result:
    workload: str
    size: int
    backend: str
    variant: str
    ops_per_s: float
    p50_us: float
    p99_us: float

    @property
    def label(self) -> str:
        if self.workload != "durable put":
            return LABELS.get((self.backend, self.variant), self.backend)
        return LABELS.get((self.backend, self.variant), f"{self.backend} {self.variant}")


def load(path: str) -> tuple[dict[str, Any], list[Result], list[dict[str, Any]]]:
    with open(path, encoding="utf-8") as handle:
        doc = json.load(handle)
    results, disk = [], []
    for bench in doc["benchmarks"]:
        info = bench["extra_info"]
        if info.get("workload") == "disk usage":
            disk.append({**info, "fill_ops_per_s": info["ops_per_round"] / bench["stats"]["median"]})
            continue
        results.append(
            Result(
                workload=info["workload"], size=info["size"], backend=info["backend"], variant=info["variant"],
                ops_per_s=info["ops_per_round"] / bench["stats"]["median"],
                p50_us=info["p50_us"], p99_us=info["p99_us"],
            )
        )
    order = {w: i for i, w in enumerate(WORKLOADS)}
    results.sort(key=lambda r: (order.get(r.workload, 99), r.size))
    return doc, results, disk


def _find(results: list[Result], workload: str, size: int, label: str) -> Result | None:
    return next((r for r in results if r.workload == workload and r.size == size and r.label == label), None)


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def machine_line(doc: dict[str, Any]) -> str:
    m = doc["machine_info"].get("bench", {})
    commit = doc.get("commit_info", {})
    dirty = " + uncommitted changes" if commit.get("dirty") else ""
    return (
        f"{m.get('nproc')} CPUs ({m.get('cpu_model')}), {m.get('mem_gib')} GiB RAM, Linux {m.get('kernel')}, "
        f"Python {m.get('python')}, scratch on {m.get('scratch_filesystem')}; "
        f"run {doc.get('datetime', '?')[:16]} at commit {commit.get('id', '?')[:7]}{dirty}; "
        f"load average at start / end {m.get('loadavg_at_start', ['?'])[0]} / {m.get('loadavg_at_end', ['?'])[0]}"
    )


def throughput_table(results: list[Result]) -> list[str]:
    lines = ["| workload | size | backend | ops/s (median round) | p50 µs | p99 µs |", "|---|---|---|--:|--:|--:|"]
    for r in results:
        lines.append(
            f"| {r.workload} | {SIZE_LABELS[r.size]} | {r.label} | {_num(r.ops_per_s)} | "
            f"{r.p50_us:,.1f} | {r.p99_us:,.1f} |"
        )
    return lines


def ratio_table(results: list[Result]) -> list[str]:
    """trunkstore over each baseline of the same workload and size (> 1: trunkstore is faster)."""
    lines = [
        "| workload | size | trunkstore | ops/s | baseline | baseline ops/s | ratio |",
        "|---|---|---|--:|---|--:|--:|",
    ]
    for r in results:
        if r.backend != "trunkstore":
            continue
        for base in results:
            if base.backend == "trunkstore" or (base.workload, base.size) != (r.workload, r.size):
                continue
            lines.append(
                f"| {r.workload} | {SIZE_LABELS[r.size]} | {r.label} | {_num(r.ops_per_s)} | {base.label} | "
                f"{_num(base.ops_per_s)} | {r.ops_per_s / base.ops_per_s:.2f}x |"
            )
    return lines


def disk_table(disk: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| backend | objects x 1 KiB | du / payload | half deleted | du / live (open) | du / live (closed) "
        "| fill ops/s |",
        "|---|--:|--:|---|--:|--:|--:|",
    ]
    for d in disk:
        lines.append(
            f"| {d['backend']} | {d['objects']:,} | {d['du_full_ratio']:.3f} | {d['variant'].split()[0]} | "
            f"{d['du_after_delete_ratio']:.3f} | {d['du_after_close_ratio']:.3f} | {_num(d['fill_ops_per_s'])} |"
        )
    return lines


def _check(what: str, value: float | None, goal: float, unit: str = "x") -> str:
    if value is None:
        return f"| {what} | >= {goal:g}{unit} | not measured | - |"
    shown = _num(value) if unit == "/s" else f"{value:.2f}"
    return f"| {what} | >= {goal:,g}{unit} | {shown}{unit} | {'met' if value >= goal else 'MISSED'} |"


def _bound(what: str, value: float | None, goal: float, *, at_most: bool = False) -> str:
    """A limit of the machine, not of any store: whether a target (``>= goal``, or ``<= goal`` when
    ``at_most``) can be reached at all here."""
    sign = "<=" if at_most else ">="
    if value is None:
        return f"| {what} | ({sign} {goal:g}x) | not measured | - |"
    reachable = value <= goal if at_most else value >= goal
    verdict = "the goal is within reach" if reachable else "out of reach for any store here"
    return f"| {what} | ({sign} {goal:g}x) | {value:.3f}x | {verdict} |"


def _check_at_most(what: str, value: float | None, goal: float) -> str:
    if value is None:
        return f"| {what} | <= {goal:g}x | not measured | - |"
    return f"| {what} | <= {goal:g}x | {value:.3f}x | {'met' if value <= goal else 'MISSED'} |"


def targets_table(results: list[Result], disk: list[dict[str, Any]]) -> list[str]:
    def ops(workload: str, label: str, size: int = 4096) -> float | None:
        found = _find(results, workload, size, label)
        return found.ops_per_s if found else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    put, get = ops("put", "trunkstore"), ops("get", "trunkstore")

    def best_durable(size: int) -> float | None:
        candidates = [ops("durable put", label, size) for label in ("trunkstore put_many x64", "trunkstore 8 threads")]
        return max((v for v in candidates if v is not None), default=None)

    random_half = next((d for d in disk if d["backend"] == "trunkstore" and d["variant"].startswith("random")), None)
    lines = ["| target (at 4 KiB unless stated) | goal | measured | |", "|---|--:|--:|---|"]
    lines += [
        _check("put without sync", put, 100_000, "/s"),
        _check("put without sync / files", ratio(put, ops("put", "files")), 3),
        _check("put without sync / sqlite", ratio(put, ops("put", "sqlite")), 2),
        _check("get", get, 200_000, "/s"),
        _check("get / files", ratio(get, ops("get", "files")), 1.3),
        _check("get / sqlite", ratio(get, ops("get", "sqlite")), 1.3),
        *(
            _check(f"durable, best of put_many x64 and 8 threads / files fsync per file, {SIZE_LABELS[size]}",
                   ratio(best_durable(size), ops("durable put", "files, fsync per file", size)), 10)
            for size in SIZE_LABELS
        ),
        *(
            _bound(f"bound for any store: disk ceiling / files fsync per file, {SIZE_LABELS[size]}",
                   ratio(ops("durable put", "disk ceiling: overwrite x64 + fdatasync", size),
                         ops("durable put", "files, fsync per file", size)), 10)
            for size in SIZE_LABELS
        ),
        _check_at_most(
            f"{random_half['objects'] if random_half else 100_000:,} x 1 KiB: du / payload",
            random_half["du_full_ratio"] if random_half else None, 1.05,
        ),
        _check_at_most(
            "random half deleted, no compaction: du / live",
            random_half["du_after_delete_ratio"] if random_half else None, 1.15,
        ),
        _bound(
            "bound for any layout: the same deletions, objects back to back, no headers",
            random_half.get("dense_layout_after_delete_ratio") if random_half else None, 1.15, at_most=True,
        ),
    ]
    return lines


def markdown(doc: dict[str, Any], results: list[Result], disk: list[dict[str, Any]]) -> str:
    parts = [
        f"Machine: {machine_line(doc)}",
        "",
        "### Targets",
        *targets_table(results, disk),
        "",
        "### Throughput and latency",
        *throughput_table(results),
        "",
        "### trunkstore against each baseline",
        *ratio_table(results),
        "",
        "### Space on disk",
        *disk_table(disk),
    ]
    return "\n".join(parts) + "\n"


def plot(results: list[Result], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    groups = sorted({(r.workload, r.size) for r in results}, key=lambda g: (WORKLOADS.index(g[0]), g[1]))
    fig, ax = plt.subplots(figsize=(17, 7))
    seen: set[str] = set()
    for index, (workload, size) in enumerate(groups):
        members = [r for r in results if (r.workload, r.size) == (workload, size)]
        width = 0.84 / len(members)
        for slot, r in enumerate(members):
            label = r.label if r.label not in seen else None
            seen.add(r.label)
            ax.bar(index - 0.42 + width * (slot + 0.5), r.ops_per_s, width, label=label,
                   color=COLORS.get(r.label, "#999999"), edgecolor="black", linewidth=0.3)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{w}\n{SIZE_LABELS[s]}" for w, s in groups], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("operations per second (median round, log scale)")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", which="both", alpha=0.3)
    # Below the axes, where it hides no bar.
    ax.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="?", default="bench/results/engine.json")
    parser.add_argument("--png", default="bench/results/engine.png")
    parser.add_argument("--md", help="also write the markdown to this file")
    args = parser.parse_args(argv)
    doc, results, disk = load(args.json)
    text = markdown(doc, results, disk)
    print(text, end="")
    if args.md:
        with open(args.md, "w", encoding="utf-8") as handle:
            handle.write(text)
    if args.png:
        plot(results, args.png, machine_line(doc))


if __name__ == "__main__":
    main()
