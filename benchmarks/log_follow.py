"""How soon a followed log's line reaches its follower, and what a quiet follow costs: the
agent's inotify watch against the timer it replaced (a re-read every 0.2 s), in one run.

    python benchmarks/log_follow.py [--lines 60] [--idle 5]

A writer process stands in for a rank (its stdout is the log file, opened as the runner opens
it) and prints a line stamped with its time every 50-150 ms, then stays quiet for ``--idle``
seconds. The follower is the agent's own reader (``_LogReader``), woken by a ``FolderWatch``,
or, for the anchor, re-reading on the old timer. Printed: write-to-delivery latency (p50, p95),
and while the log is quiet, the follower's wake-ups per second and CPU milliseconds per second.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jupyter_mlinfra.backends.local.file_watch import POLL_SECONDS, FolderWatch, Inotify
from jupyter_mlinfra.backends.local.local_jobs import _LogReader

WRITER = """
import random, sys, time
lines, idle = int(sys.argv[1]), float(sys.argv[2])
for i in range(lines):
    time.sleep(random.uniform(0.05, 0.15))
    print(f"{time.time():.6f} {i}", flush=True)
time.sleep(idle)
"""


async def run(folder: Path, lines: int, idle: float, watched: bool) -> dict[str, float]:
    log = folder / "rank-0.log"
    reader = _LogReader(log, "")
    wake = asyncio.Event()
    with log.open("ab") as out:
        writer = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, str(lines), str(idle), stdout=out
        )
    latencies: list[float] = []
    with FolderWatch(Inotify(), folder, wake.set) if watched else _Nothing():
        while len(latencies) < lines:
            await (wake.wait() if watched else asyncio.sleep(POLL_SECONDS))
            wake.clear()
            now = time.time()
            latencies += [now - float(line.split()[0]) for line in reader.read()]
        # the writer is quiet from its last line on: count what following it costs
        quiet_until = time.monotonic() + idle * 0.8
        cpu, passes = time.process_time(), 0
        while (left := quiet_until - time.monotonic()) > 0:
            if watched:
                try:
                    await asyncio.wait_for(wake.wait(), left)
                except TimeoutError:
                    break
                wake.clear()
            else:
                await asyncio.sleep(POLL_SECONDS)
            passes += 1
            reader.read()
        cpu = time.process_time() - cpu
    await writer.wait()
    ordered = sorted(latencies)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[int(len(ordered) * 0.95) - 1] * 1000,
        "wakeups_per_s": passes / (idle * 0.8),
        "cpu_ms_per_s": cpu * 1000 / (idle * 0.8),
    }


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=60)
    parser.add_argument("--idle", type=float, default=5.0)
    args = parser.parse_args()
    results = {}
    for name, watched in (("timer (0.2 s, before)", False), ("inotify", True)):
        with tempfile.TemporaryDirectory(prefix="mli-bench-") as folder:
            results[name] = asyncio.run(run(Path(folder), args.lines, args.idle, watched))
    anchor, watched_result = results["timer (0.2 s, before)"], results["inotify"]
    print(
        f"{'follower':24} {'p50 ms':>8} {'p95 ms':>8} {'wake-ups/s idle':>16} {'CPU ms/s idle':>14}"
    )
    for name, result in results.items():
        print(
            f"{name:24} {result['p50_ms']:8.2f} {result['p95_ms']:8.2f} "
            f"{result['wakeups_per_s']:16.2f} {result['cpu_ms_per_s']:14.3f}"
        )
    ratio = anchor["p50_ms"] / watched_result["p50_ms"]
    print(f"latency p50: inotify is {ratio:.0f}x sooner than the timer")
    print(
        f"while quiet: {watched_result['wakeups_per_s']:.2f} wake-ups/s against "
        f"{anchor['wakeups_per_s']:.2f} for the timer"
    )


if __name__ == "__main__":
    main()
