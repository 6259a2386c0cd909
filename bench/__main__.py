"""python -m bench [--sizes 50,500] [--latency 1.0] [--repeat 3]
    [--only default,telemetry,xdist,sequential,curl,floor,collect,discovery,listing]
python -m bench --large   (N=5000 over 50 endpoints: our run in one process, 4 shards, the floor, --collect-only)
python -m bench --only stop   (SIGTERM to a run whose N=5000 and N=50000 cases a server holds: signal to exit)

Starts the loopback server in its own process, generates the endpoints files, runs every row at every size,
prints one table per size plus the targets, and writes everything to bench/out/results.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

from model_monitor.case import RUN_MAX_CONCURRENCY
from testbed.receiver import Receiver

from . import discovery, listing, report, rows, stop, suite
from .rows import Row
from .target import Target

OUT = Path(__file__).resolve().parent / "out"
ROW_KEYS = ("default", "telemetry", "xdist", "sequential", "curl", "floor")
EXTRA_ROWS = ("collect", "discovery", "listing")  # measured once, not per size
# Run order: the floor right before our default run, the slow sequential row last.
RUN_ORDER = ("floor", "default", "shards", "telemetry", "xdist", "curl", "sequential")
SHARDS = 4
# --large: issue #15's scale, for the rows its targets name (the others would take minutes each at this N).
LARGE_SIZE, LARGE_ENDPOINTS, LARGE_ONLY = 5000, 50, ("floor", "default", "shards", "collect")
COLLECT_REPEATS = 3
LEGEND = (
    "Wall time: from starting the command to its exit, interpreter start-up included. Timing error per case: the "
    "duration the client reported minus the server's own duration for that request; p99 is nearest-rank (at N=50, "
    "the largest). Peak RSS: summed over the row's whole process tree, server excluded. in flight: the most "
    "requests the server was answering at once, overall and (in brackets) for the busiest endpoint, from its own "
    "records. load: the 1-minute load average as the row started (2 cores: above 2, other work was competing "
    "for the CPU). Bytecode: compiled once and kept, as an install has it (./dev bench unsets PYTHONDONTWRITEBYTECODE)."
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Model Monitor's scale benchmark.")
    parser.add_argument("--sizes", default="50,500", help="comma-separated case counts (default 50,500)")
    parser.add_argument("--latency", type=float, default=1.0, help="the server's fixed latency in seconds (1.0)")
    parser.add_argument(
        "--only",
        default=",".join((*ROW_KEYS, *EXTRA_ROWS)),
        help="rows to run: default,telemetry,xdist,sequential,curl,floor,collect,discovery,listing (all of these), "
        "shards, stop",
    )
    parser.add_argument(
        "--stop-sizes",
        default=",".join(map(str, stop.SIZES)),
        help="held case counts of the stop row (" + ",".join(map(str, stop.SIZES)) + ")",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="run each row this many times and keep the run with the median wall time "
        "(3; the sequential row runs once)",
    )
    parser.add_argument(
        "--max-sequential-s",
        type=float,
        default=120.0,
        help="skip the sequential row where N x latency exceeds this, and estimate it (120)",
    )
    parser.add_argument("--out", type=Path, default=OUT, help="where files and results.json go (bench/out)")
    parser.add_argument(
        "--endpoints",
        type=int,
        default=suite.ENDPOINTS,
        help=f"endpoints the cases are spread over ({suite.ENDPOINTS})",
    )
    parser.add_argument(
        "--large",
        action="store_true",
        help=f"run N={LARGE_SIZE} over {LARGE_ENDPOINTS} endpoints instead: rows "
        f"{','.join(LARGE_ONLY)} (overrides --sizes, --endpoints and --only)",
    )
    args = parser.parse_args(argv)
    if args.large:
        args.sizes, args.endpoints, args.only = str(LARGE_SIZE), LARGE_ENDPOINTS, ",".join(LARGE_ONLY)
    args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    args.only = [k.strip() for k in args.only.split(",") if k.strip()]
    args.stop_sizes = tuple(sorted({int(s) for s in args.stop_sizes.split(",") if s.strip()}))
    unknown = set(args.only) - {*ROW_KEYS, *EXTRA_ROWS, "shards", "stop"}
    if unknown:
        parser.error(f"--only: unknown row(s) {', '.join(sorted(unknown))}")
    args.repeat = max(1, args.repeat)
    return args


def run_row(key: str, s: suite.Suite, target: Target, work: Path, receiver: Receiver) -> Row:
    if key == "default":
        return rows.monitor("default", s, target, work)
    if key == "telemetry":
        receiver.clear()
        row = rows.monitor("telemetry", s, target, work, f"--cronitor-url={receiver.url}/p/bench-key")
        row.note = f"{len(receiver.pings)} pings received"
        return row
    if key == "shards":
        return rows.shards(s, target, work, SHARDS)
    if key == "xdist":
        return rows.monitor("xdist", s, target, work, "-n", "auto")
    if key == "sequential":
        return rows.monitor("sequential", s, target, work, "--max-concurrency", "1")
    if key == "curl":
        row = rows.curl_pods(s, target, work)
        row.note = "whole seconds, no cap"
        return row
    return rows.floor(s, target, work, RUN_MAX_CONCURRENCY)


def median_run(runs: list[Row]) -> Row:
    """The run with the median wall time (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r.wall_s or 0.0)[(len(runs) - 1) // 2]


class Bench:
    """One benchmark run: every size, every row, and what they measured."""

    def __init__(self, args: argparse.Namespace, target: Target, receiver: Receiver, streaming: bool) -> None:
        self.args, self.target, self.receiver, self.streaming = args, target, receiver, streaming
        self.rows: list[Row] = []
        self.collect_s: dict[int, float] = {}
        self.sequential_per_case: float | None = None
        self.sizes: dict[str, dict] = {}

    def run(self, size: int) -> None:
        work = self.args.out / f"n{size}"
        s = suite.generate(size, self.target.url, work, self.streaming, self.args.endpoints)
        kinds = ", ".join(f"{n} {k}" for k, n in s.kinds().items())
        print(
            f"\nN={size}: {s.endpoints_file} ({kinds}; {s.endpoint_count} endpoints, max_concurrency 20 each, "
            "global 100)",
            flush=True,
        )
        entry: dict = self.sizes.setdefault(
            str(size), {"endpoints_file": str(s.endpoints_file), "kinds": s.kinds(), "rows": {}}
        )
        # Warm-up, untimed: compiles the bytecode (./dev bench keeps it) and fills the page cache.
        rows.collect_only(s, work)
        if "collect" in self.args.only:
            self.collect_only(s, work, entry)
        keys = [k for k in RUN_ORDER if k in self.args.only]
        if "sequential" in keys and size * self.args.latency > self.args.max_sequential_s:
            keys.remove("sequential")
            self.skip_sequential(size, entry)
        runs: dict[str, list[Row]] = {}
        # Repeats go round the rows, not row after row, so that a burst of load on a shared machine is spread
        # over all of them. The sequential row runs once: its N requests one by one average the noise out.
        for repeat in range(self.args.repeat):
            for key in keys:
                if key == "sequential" and repeat:
                    continue
                row = run_row(key, s, self.target, work, self.receiver)
                runs.setdefault(key, []).append(row)
                stats = report.Stats.of(row.errors)
                print(
                    f"  {report.LABELS[key]}: {row.wall_s:.2f} s, {row.passed}/{size} ok, "
                    f"error median {report.ms(stats.median_ms)} ms p99 {report.ms(stats.p99_ms)} ms "
                    f"(load {row.load})",
                    flush=True,
                )
        for key, key_runs in runs.items():
            row = median_run(key_runs)
            if key == "sequential" and row.wall_s:
                self.sequential_per_case = row.wall_s / size
            self.rows.append(row)
            entry["rows"][key] = {"kept": key_runs.index(row), "runs": [row_json(r) for r in key_runs]}

    def collect_only(self, s: suite.Suite, work: Path, entry: dict) -> None:
        times = [rows.collect_only(s, work).wall_s for _ in range(COLLECT_REPEATS)]
        self.collect_s[s.size] = statistics.median(times)
        entry["collect_only_s"] = {"median": self.collect_s[s.size], "runs": times}
        print(f"  --collect-only: {self.collect_s[s.size]:.2f} s (median of {COLLECT_REPEATS})", flush=True)

    def skip_sequential(self, size: int, entry: dict) -> None:
        per_case = self.sequential_per_case
        estimate = size * (per_case or self.args.latency)
        basis = f"{per_case:.2f} s per case measured at a smaller N" if per_case else "N x latency"
        row = Row("sequential", size, skipped=f"skipped: would take ~{estimate:.0f} s ({basis})", estimate_s=estimate)
        self.rows.append(row)
        entry["rows"]["sequential"] = {"skipped": row.skipped, "estimate_s": estimate}

    def print_tables(self) -> None:
        latency = self.args.latency
        for size in self.args.sizes:
            size_rows = [r for r in self.rows if r.size == size]
            print(f"N={size}, server latency {latency:g} s, timing error = reported - server-side duration")
            for line in report.table(size_rows):
                print(line)
            if (line := report.overhead(size_rows)) is not None:
                print(line)
            for line in report.phases(size_rows):
                print(line)
            if size in self.collect_s:
                print(f"N={size}: --collect-only {self.collect_s[size]:.2f} s (median of {COLLECT_REPEATS})")
            print()
        print(
            f"Each row: the run with the median wall time of {self.args.repeat} (sequential: one run). " + LEGEND + "\n"
        )


def row_json(row: Row) -> dict:
    stats = report.Stats.of(row.errors)
    return {
        "wall_s": row.wall_s,
        "peak_rss_mb": None if row.peak_rss_bytes is None else row.peak_rss_bytes / report.MB,
        "processes": row.processes,
        "passed": row.passed,
        "requests": row.requests,
        "returncode": row.returncode,
        "in_flight": row.in_flight,
        "in_flight_busiest_endpoint": row.in_flight_endpoint,
        "load": row.load,
        "note": row.note,
        "error_ms": {"median": stats.median_ms, "p99": stats.p99_ms, "max": stats.max_ms},
        "phase_error_ms": {
            phase: {"median": s.median_ms, "p99": s.p99_ms, "max": s.max_ms}
            for phase, errors in row.phase_errors().items()
            if (s := report.Stats.of(errors)).median_ms is not None
        },
        "errors_ms": {
            case: round((row.reported[case] - row.truth[case]) * 1000, 3) for case in row.reported if case in row.truth
        },
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = "python -m bench" + (" " + shlex.join(argv) if argv else "")
    machine = report.machine()
    print(f"bench: {command}")
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()) + f"; load average {rows.loadavg()}")
    streaming = suite.streaming_supported()
    if not streaming:
        print("bench: this checkout's endpoints schema does not accept `stream: true`; streaming cases left out")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    # The telemetry row's Cronitor stand-in lives in this process, which only waits while a row runs.
    with Target(args.latency, rows.ROOT) as target, Receiver() as receiver:
        print(f"server: {target.url} (pid {target.pid}, latency {args.latency:g} s, its own process)")
        bench = Bench(args, target, receiver, streaming)
        for size in args.sizes:
            bench.run(size)
    found = discovery.run(args.out / "discovery", args.latency) if "discovery" in args.only else None
    stopped = stop.run(args.out / "stop", args.stop_sizes) if "stop" in args.only else None
    listed = listing.run(args.out / "listing") if "listing" in args.only else None
    print()
    bench.print_tables()
    if found is not None:
        print("\n".join(discovery.describe(found, args.latency)) + "\n")
    if stopped is not None:
        print("\n".join(stop.describe(stopped)) + "\n")
    if listed is not None:
        print("\n".join(listing.describe(listed)) + "\n")
    verdicts = report.targets(bench.rows, bench.collect_s, args.latency) if {50, 500} & set(args.sizes) else []
    if LARGE_SIZE in args.sizes:
        verdicts += report.scale_targets(bench.rows, bench.collect_s, LARGE_SIZE)
    print("targets (issue #6; issue #15 at N=5000), our default run:")
    for v in verdicts:
        mark = "n/a " if v.met is None else "MET " if v.met else "MISS"
        print(f"  [{mark}] {v.target}: {v.measured}")
    truth = report.truth_targets(bench.rows, bench.collect_s)
    print("targets of issue #25 (timing truth at scale), our default run against the floor:")
    for v in truth:
        print(f"  [{'n/a' if v.met is None else 'MET' if v.met else 'NOT MET'}] {v.target}: {v.measured}")
    results = {
        "command": command,
        "machine": machine,
        "latency_s": args.latency,
        "streaming": streaming,
        "repeat": args.repeat,
        "started": started,
        "sizes": bench.sizes,
        "targets": [asdict(v) for v in verdicts],
        "truth_targets": [asdict(v) for v in truth],
    }
    if found is not None:
        results["discovery"] = {
            "collect_only_s": found.collect.wall_s,
            "run_s": found.run.wall_s,
            "peak_rss_mb": found.run.peak_rss_bytes / report.MB,
            "listings": found.listings,
        }
    if stopped is not None:
        results["stop"] = [asdict(row) for row in stopped]
    path = args.out / "results.json"
    path.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
