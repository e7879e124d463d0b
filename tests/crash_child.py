"""A process that records under load until it is killed (see test_persistence).

Usage: python -m tests.crash_child SNAPSHOT_PATH

The main thread records into ("main", "r1", "t") and prints "COUNT MS" after
every 500 records (MS = wall-clock ms once those records are complete);
three more threads record into other keys to load the process.
"""

from __future__ import annotations

import sys
import threading
import time

from zeta_fast import PerformanceTracker


def main() -> None:
    tracker = PerformanceTracker(snapshot_path=sys.argv[1], snapshot_interval_s=0.05)

    def load(index: int) -> None:
        key = tracker.key("load", f"r{index}", "t")
        while True:
            key.record(True, 3.0)

    for index in range(3):
        threading.Thread(target=load, args=(index,), daemon=True).start()
    count = 0
    print("READY", flush=True)
    while True:
        for _ in range(500):
            tracker.record("main", "r1", "t", count % 7 != 0, 12.5)
            count += 1
        print(count, time.time_ns() // 1_000_000, flush=True)


if __name__ == "__main__":
    main()
