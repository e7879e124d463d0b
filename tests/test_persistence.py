"""Never lose what was learned: snapshots on real files, real processes, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zeta_fast import (
    SNAPSHOT_FORMAT_VERSION,
    ManualClock,
    PerformanceTracker,
    SnapshotError,
    SnapshotWarning,
    WindowConfig,
)

ROOT = Path(__file__).resolve().parent.parent
START_MS = 1_750_000_000_000


def filled(path: Path, clock: ManualClock, records: int = 100) -> PerformanceTracker:
    tracker = PerformanceTracker(clock=clock, snapshot_path=path, snapshot_interval_s=60)
    for i in range(records):
        tracker.record("m", f"r{i % 2}", "t", i % 4 != 0, float(i))
    return tracker


def test_close_saves_and_a_new_tracker_restores(tmp_path: Path) -> None:
    path = tmp_path / "state" / "tracker.snapshot"
    clock = ManualClock(START_MS)
    tracker = filled(path, clock)
    before = tracker.stats("m").to_dict()
    tracker.close()
    tracker.close()  # idempotent
    restored = PerformanceTracker(clock=clock, snapshot_path=path)
    assert restored.restored_from == str(path) or Path(str(restored.restored_from)) == path
    assert restored.restored_taken_at_ms == START_MS
    assert restored.restore_warning is None
    assert restored.stats("m").to_dict() == before
    restored.close()


def test_restored_windows_keep_expiring(tmp_path: Path) -> None:
    path = tmp_path / "tracker.snapshot"
    clock = ManualClock(START_MS)
    filled(path, clock).close()
    clock.advance(600_000)
    restored = PerformanceTracker(clock=clock, snapshot_path=path)
    stats = restored.stats("m")
    assert stats.requests == 0
    assert stats.lifetime_requests == 100
    restored.close()


def test_context_manager_and_default_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZETA_FAST_STATE_DIR", str(tmp_path / "default"))
    with PerformanceTracker(clock=ManualClock(START_MS)) as tracker:
        tracker.record("m", "r", "t", True, 1.0)
        assert Path(str(tracker.snapshot_path)) == tmp_path / "default" / "tracker.snapshot"
    with PerformanceTracker(clock=ManualClock(START_MS)) as again:
        assert again.stats("m").lifetime_requests == 1


def test_background_saver_writes_on_its_interval(tmp_path: Path) -> None:
    path = tmp_path / "tracker.snapshot"
    tracker = PerformanceTracker(snapshot_path=path, snapshot_interval_s=0.02)
    tracker.record("m", "r", "t", True, 1.0)
    deadline = time.monotonic() + 5
    while (tracker.saver_status() or {}).get("saves", 0) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    status = tracker.saver_status()
    assert status is not None
    assert status["saves"] >= 3
    assert status["failures"] == 0
    assert path.exists()
    assert path.with_name(path.name + ".prev").exists()
    tracker.close()
    assert tracker.saver_status() is None


def test_one_file_one_tracker(tmp_path: Path) -> None:
    path = tmp_path / "tracker.snapshot"
    first = PerformanceTracker(snapshot_path=path)
    with pytest.raises(SnapshotError, match="in use by another tracker"):
        PerformanceTracker(snapshot_path=path)
    first.close()
    PerformanceTracker(snapshot_path=path).close()


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (corrupt, "checksum"),
        (lambda p: p.write_bytes(p.read_bytes()[:-7]), "truncated"),
        (lambda p: p.write_bytes(p.read_bytes()[:5]), "truncated"),
        (
            lambda p: p.write_bytes(
                p.read_bytes()[:8] + (99).to_bytes(4, "little") + p.read_bytes()[12:]
            ),
            "format version 99",
        ),
        (lambda p: p.unlink(), "No such file"),
    ],
)
def test_a_bad_newest_snapshot_falls_back_to_the_previous_one(
    tmp_path: Path, damage: object, reason: str
) -> None:
    path = tmp_path / "tracker.snapshot"
    clock = ManualClock(START_MS)
    tracker = filled(path, clock, records=100)
    tracker.save()  # -> .prev holds 100 records
    tracker.record("m", "r0", "t", True, 1.0)
    tracker.close()  # -> current holds 101
    damage(path)  # type: ignore[operator]
    with pytest.warns(SnapshotWarning, match=reason):
        restored = PerformanceTracker(clock=clock, snapshot_path=path)
    assert restored.stats("m").lifetime_requests == 100
    assert restored.restore_warning is not None
    assert reason in restored.restore_warning
    restored.close()


def test_no_usable_snapshot_is_an_error_not_a_reset(tmp_path: Path) -> None:
    path = tmp_path / "tracker.snapshot"
    clock = ManualClock(START_MS)
    tracker = filled(path, clock)
    tracker.save()
    tracker.close()
    corrupt(path)
    corrupt(path.with_name(path.name + ".prev"))
    with pytest.raises(SnapshotError, match="no usable snapshot"):
        PerformanceTracker(clock=clock, snapshot_path=path)
    # Explicitly declining the restore is the way to start over.
    fresh = PerformanceTracker(clock=clock, snapshot_path=path, restore=False)
    assert fresh.stats("m").lifetime_requests == 0
    fresh.close()


def test_another_window_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tracker.snapshot"
    filled(path, ManualClock(START_MS)).close()
    with pytest.raises(SnapshotError, match="60 buckets of 5000 ms"):
        PerformanceTracker(WindowConfig(buckets=30, histogram_slices=3), snapshot_path=path)


def test_the_exposed_format_version_is_the_one_files_carry_and_read(tmp_path: Path) -> None:
    path = tmp_path / "tracker.snapshot"
    clock = ManualClock(START_MS)
    filled(path, clock).close()
    data = path.read_bytes()
    # The header: 8 magic bytes, then the format version (u32, little-endian).
    assert data[:8] == b"ZETAFAST"
    assert int.from_bytes(data[8:12], "little") == SNAPSHOT_FORMAT_VERSION
    newer = SNAPSHOT_FORMAT_VERSION + 1
    path.write_bytes(data[:8] + newer.to_bytes(4, "little") + data[12:])
    told = f"format version {newer}, this zeta_fast reads version {SNAPSHOT_FORMAT_VERSION}"
    with pytest.raises(SnapshotError, match=told):
        PerformanceTracker(clock=clock, snapshot_path=path)


def test_interpreter_exit_saves_without_close(tmp_path: Path) -> None:
    path = tmp_path / "tracker.snapshot"
    script = (
        "import zeta_fast\n"
        f"t = zeta_fast.PerformanceTracker(snapshot_path={str(path)!r}, snapshot_interval_s=3600)\n"
        "for i in range(1234):\n"
        "    t.record('m', 'r', 't', True, 1.0)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    restored = PerformanceTracker(snapshot_path=path)
    assert restored.stats("m").lifetime_requests == 1234
    restored.close()


@pytest.mark.parametrize("run_for_s", [0.6, 1.3, 2.1])
def test_kill_minus_9_under_load_loses_nothing_older_than_the_last_snapshot(
    tmp_path: Path, run_for_s: float
) -> None:
    path = tmp_path / "tracker.snapshot"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_child", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "READY"
    time.sleep(run_for_s)
    os.kill(child.pid, signal.SIGKILL)
    output, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    # The last line may have been cut by the kill: keep whole "COUNT MS" lines.
    progress = [
        (int(parts[0]), int(parts[1]))
        for parts in (line.split() for line in output.splitlines())
        if len(parts) == 2
    ]
    assert progress, "the child recorded nothing before it was killed"
    restored = PerformanceTracker(snapshot_path=path, restore=True)
    try:
        # The newest file is whole: no fallback was needed.
        assert restored.restore_warning is None
        taken_at = restored.restored_taken_at_ms
        assert taken_at is not None
        recorded = restored.stats("main").lifetime_requests
        # Everything finished before the snapshot was taken is in it...
        before_snapshot = max((n for n, ms in progress if ms < taken_at), default=0)
        assert recorded >= before_snapshot
        # ...and nothing was invented: at most what the child had started.
        assert recorded <= progress[-1][0] + 500
        assert restored.stats("main").lifetime_successes == sum(
            1 for i in range(recorded) if i % 7 != 0
        )
    finally:
        restored.close()
