"""Figures from rows: timing-error statistics, the side-by-side table, the targets of issue #6, machine facts."""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .rows import Row

MB = 1024 * 1024
LABELS = {
    "default": "1. our default run",
    "telemetry": "1b. our default run, Cronitor pings on",
    "shards": "1c. our run, 4 shards side by side (--shard i/4)",
    "xdist": "2. our run, -n auto",
    "sequential": "3. plain sequential (--max-concurrency 1)",
    "curl": "4. original chart: one curl per model",
    "floor": "5. floor: bare asyncio+aiohttp client",
}
ORDER = tuple(LABELS)


def p99(values: Sequence[float]) -> float:
    """Nearest-rank 99th percentile (at N=50 that is the largest value)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Stats:
    median_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @classmethod
    def of(cls, errors: Sequence[float]) -> Stats:
        if not errors:
            return cls(None, None, None)
        return cls(statistics.median(errors) * 1000, p99(errors) * 1000, max(errors) * 1000)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"


def table(rows: Sequence[Row]) -> list[str]:
    floor = next((r for r in rows if r.key == "floor" and r.wall_s), None)
    header = (
        "row",
        "N",
        "ok",
        "requests",
        "in flight (1 ep)",
        "wall s",
        "x floor",
        "err med ms",
        "err p99 ms",
        "err max ms",
        "peak RSS MB",
        "procs",
        "load",
        "note",
    )
    lines: list[tuple[str, ...]] = [header]
    for row in sorted(rows, key=lambda r: ORDER.index(r.key)):
        if row.skipped:
            wall = f"~{row.estimate_s:.0f} (est.)" if row.estimate_s else "-"
            ratio = f"~{row.estimate_s / floor.wall_s:.1f}" if row.estimate_s and floor else "-"
            lines.append(
                (LABELS[row.key], str(row.size), "-", "-", "-", wall, ratio, "-", "-", "-", "-", "-", "-", row.skipped)
            )
            continue
        stats = Stats.of(row.errors)
        ratio = f"{row.wall_s / floor.wall_s:.2f}" if floor and row.wall_s else "-"
        rss = f"{row.peak_rss_bytes / MB:.0f}" if row.peak_rss_bytes else "-"
        note = row.note or (f"exit {row.returncode}" if row.returncode else "")
        lines.append(
            (
                LABELS[row.key],
                str(row.size),
                f"{row.passed}/{row.size}",
                str(row.requests),
                f"{row.in_flight} ({row.in_flight_endpoint})",
                f"{row.wall_s:.2f}",
                ratio,
                ms(stats.median_ms),
                ms(stats.p99_ms),
                ms(stats.max_ms),
                rss,
                str(row.processes),
                row.load.split()[0] if row.load else "-",
                note,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return out


def overhead(rows: Sequence[Row]) -> str | None:
    """Our default run over the floor, as a figure of its own."""
    ours = next((r for r in rows if r.key == "default" and not r.skipped), None)
    floor = next((r for r in rows if r.key == "floor" and not r.skipped), None)
    if ours is None or floor is None or not ours.wall_s or not floor.wall_s:
        return None
    a, b = Stats.of(ours.errors), Stats.of(floor.errors)
    parts = [f"wall {ours.wall_s - floor.wall_s:+.2f} s (x{ours.wall_s / floor.wall_s:.2f})"]
    if a.median_ms is not None and b.median_ms is not None:
        parts.append(f"timing error median {a.median_ms - b.median_ms:+.1f} ms, p99 {a.p99_ms - b.p99_ms:+.1f} ms")
    if ours.peak_rss_bytes and floor.peak_rss_bytes:
        parts.append(f"peak RSS {(ours.peak_rss_bytes - floor.peak_rss_bytes) / MB:+.0f} MB")
    return f"N={ours.size}: our overhead over the floor: " + "; ".join(parts)


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    met: bool | None  # None: not measured in this run


def targets(rows: Sequence[Row], collect_s: dict[int, float], latency: float) -> list[Verdict]:
    """Issue #6's targets, for our default run (they are stated for a 1 s latency)."""
    find = {(r.key, r.size): r for r in rows if not r.skipped and r.wall_s}
    out: list[Verdict] = []
    unmeasured = "not measured"

    ours, floor = find.get(("default", 500)), find.get(("floor", 500))
    if ours and ours.wall_s:
        out.append(Verdict("N=500: wall <= 8 s", f"{ours.wall_s:.2f} s", ours.wall_s <= 8.0))
    else:
        out.append(Verdict("N=500: wall <= 8 s", unmeasured, None))
    if ours and floor and ours.wall_s and floor.wall_s:
        ratio = ours.wall_s / floor.wall_s
        out.append(
            Verdict(
                "N=500: wall <= 1.5 x floor", f"{ours.wall_s:.2f} s / {floor.wall_s:.2f} s = x{ratio:.2f}", ratio <= 1.5
            )
        )
    else:
        out.append(Verdict("N=500: wall <= 1.5 x floor", unmeasured, None))
    ours = find.get(("default", 50))
    if ours and ours.wall_s:
        out.append(Verdict("N=50: wall <= 2.5 s", f"{ours.wall_s:.2f} s", ours.wall_s <= 2.5))
    else:
        out.append(Verdict("N=50: wall <= 2.5 s", unmeasured, None))
    for size in (50, 500):
        ours, floor = find.get(("default", size)), find.get(("floor", size))
        if not (ours and floor and ours.errors and floor.errors):
            out.append(Verdict(f"N={size}: timing error within 10 ms of floor's", unmeasured, None))
            continue
        a, b = Stats.of(ours.errors), Stats.of(floor.errors)
        for name, mine, theirs in (("median", a.median_ms, b.median_ms), ("p99", a.p99_ms, b.p99_ms)):
            assert mine is not None and theirs is not None
            out.append(
                Verdict(
                    f"N={size}: timing error {name} within 10 ms of floor's",
                    f"{mine:.1f} vs {theirs:.1f} ms ({mine - theirs:+.1f})",
                    mine - theirs <= 10.0,
                )
            )
    collect = collect_s.get(500)
    out.append(
        Verdict(
            "N=500: --collect-only <= 1.5 s",
            unmeasured if collect is None else f"{collect:.2f} s",
            None if collect is None else collect <= 1.5,
        )
    )
    for key, label in (
        ("default", "N=500: peak RSS, all processes <= 200 MB"),
        ("xdist", "N=500, -n auto (for information): peak RSS <= 200 MB"),
    ):
        row = find.get((key, 500))
        if row and row.peak_rss_bytes:
            out.append(Verdict(label, f"{row.peak_rss_bytes / MB:.0f} MB", row.peak_rss_bytes <= 200 * MB))
        elif key == "default":
            out.append(Verdict(label, unmeasured, None))
    if latency != 1.0:
        note = f" (stated for 1 s latency; this run: {latency:g} s)"
        out = [Verdict(v.target + note, v.measured, v.met) for v in out]
    return out


def scale_targets(rows: Sequence[Row], collect_s: dict[int, float], size: int) -> list[Verdict]:
    """Issue #15's targets at N=`size` (5000), our default run in one process."""
    find = {(r.key, r.size): r for r in rows if not r.skipped and r.wall_s}
    ours, floor, collect = find.get(("default", size)), find.get(("floor", size)), collect_s.get(size)
    wall = f"N={size}: wall <= 1.3 x floor"
    rss = f"N={size}: peak RSS <= 250 MB"
    collect_label = f"N={size}: --collect-only < 3 s"
    out = [
        Verdict(wall, "not measured", None),
        Verdict(rss, "not measured", None),
        Verdict(collect_label, "not measured", None),
    ]
    if ours and floor and ours.wall_s and floor.wall_s:
        ratio = ours.wall_s / floor.wall_s
        out[0] = Verdict(wall, f"{ours.wall_s:.2f} s / {floor.wall_s:.2f} s = x{ratio:.2f}", ratio <= 1.3)
    if ours and ours.peak_rss_bytes:
        out[1] = Verdict(rss, f"{ours.peak_rss_bytes / MB:.0f} MB", ours.peak_rss_bytes <= 250 * MB)
    if collect is not None:
        out[2] = Verdict(collect_label, f"{collect:.2f} s", collect < 3.0)
    return out


# Issue #25: the wall ratio to the floor allowed at each N, and the limits at N=5000.
TRUTH_WALL = {500: 1.15, 5000: 1.05}
TRUTH_RSS_MB, TRUTH_COLLECT_S = 120, 2.0


def truth_targets(rows: Sequence[Row], collect_s: dict[int, float]) -> list[Verdict]:
    """Issue #25's targets, for our default run against the floor, at every N this run measured."""
    find = {(r.key, r.size): r for r in rows if not r.skipped and r.wall_s}
    out: list[Verdict] = []
    for size in sorted({r.size for r in rows}):
        ours, floor = find.get(("default", size)), find.get(("floor", size))
        if not (ours and floor and ours.errors and floor.errors and ours.wall_s and floor.wall_s):
            out.append(Verdict(f"N={size}: our default run against the floor", "not measured", None))
            continue
        a, b = Stats.of(ours.errors), Stats.of(floor.errors)
        for name, mine, theirs in (("median", a.median_ms, b.median_ms), ("p99", a.p99_ms, b.p99_ms)):
            assert mine is not None and theirs is not None
            label = f"N={size}: timing error {name} within 10 ms of floor's"
            out.append(Verdict(label, f"{mine:.1f} vs {theirs:.1f} ms ({mine - theirs:+.1f})", mine - theirs <= 10.0))
        if size in TRUTH_WALL:
            ratio = ours.wall_s / floor.wall_s
            label = f"N={size}: wall <= {TRUTH_WALL[size]:g} x floor"
            measured = f"{ours.wall_s:.2f} s / {floor.wall_s:.2f} s = x{ratio:.2f}"
            out.append(Verdict(label, measured, ratio <= TRUTH_WALL[size]))
        if size == 5000 and ours.peak_rss_bytes:
            mb = ours.peak_rss_bytes / MB
            label = f"N=5000: peak RSS, all processes <= {TRUTH_RSS_MB} MB"
            out.append(Verdict(label, f"{mb:.0f} MB", mb <= TRUTH_RSS_MB))
    if 5000 in collect_s:
        collect = collect_s[5000]
        out.append(
            Verdict(f"N=5000: --collect-only < {TRUTH_COLLECT_S:g} s", f"{collect:.2f} s", collect < TRUTH_COLLECT_S)
        )
    return out


def phases(rows: Sequence[Row]) -> list[str]:
    """The streamed cases' timing error per phase, median / p99 in ms, for the rows that report phases."""
    lines = []
    for row in sorted(rows, key=lambda r: ORDER.index(r.key)):
        found = row.phase_errors() if not row.skipped else {}
        if not any(found.get(phase) for phase in ("headers", "first token")):
            continue
        cells = []
        for phase, errors in found.items():
            stats = Stats.of(errors)
            cells.append(f"{phase} {ms(stats.median_ms)} / {ms(stats.p99_ms)}")
        lines.append(f"  {LABELS[row.key]} ({len(found['last byte'])} streamed): " + ", ".join(cells))
    if lines:
        lines.insert(0, "Streamed cases, timing error per phase (median / p99 ms; reported minus the server's):")
    return lines


def machine() -> dict[str, str]:
    cpuinfo: dict[str, str] = {}
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            name, _, value = line.partition(":")
            cpuinfo.setdefault(name.strip(), value.strip())
    with open("/proc/meminfo", encoding="ascii") as f:
        mem_kb = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
    return {
        "nproc": str(os.cpu_count()),
        "affinity": str(len(os.sched_getaffinity(0))),
        "cpu": f"{cpuinfo.get('model name', '?')} (family {cpuinfo.get('cpu family', '?')}, "
        f"{float(cpuinfo.get('cpu MHz', 0)):.0f} MHz)",
        "memory": f"{mem_kb / MB:.0f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
