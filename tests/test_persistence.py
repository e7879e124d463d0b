"""Never lose what was learned: snapshots on real files, real processes, kill -9."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
from zeta_fast.learning import OutcomePredictor, text_features
from zeta_fast.runtime import LearnedStateSaver

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


def test_a_router_closes_the_tracker_it_made_and_not_one_passed_in(tmp_path: Path) -> None:
    from zeta_fast import Router
    from zeta_fast.config import parse_router_config

    path = tmp_path / "tracker.snapshot"
    config = {
        "models": [
            {
                "id": "m",
                "capabilities": {"chat": 80, "code": 80, "reasoning": 80, "knowledge": 80},
                "replicas": [{"id": "r1", "url": "http://127.0.0.1:9"}],
            }
        ],
        "state_path": str(path),
        "alerts": {"enabled": False},
        "outcome_log": {"enabled": False},
    }
    router = Router(parse_router_config(config))
    for _ in range(25):
        router.record(router.route("hello there"), True, 100.0)
    router.close()
    # The final snapshot is on disk when close() returns (before, the
    # tracker's saver went on writing after close and the file came later).
    assert path.exists()
    assert router.tracker.saver_status() is None, "the saver is stopped"
    restored = PerformanceTracker(snapshot_path=path)
    assert restored.stats("m").requests == 25
    restored.close()
    # A tracker passed in stays open for its owner.
    shared = PerformanceTracker(persist=False)
    other = Router(parse_router_config({**config, "state_path": None}), tracker=shared)
    other.close()
    shared.record("m", "r1", "chat", True, 1.0)
    assert shared.stats("m").requests == 1


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


# -- helpers for the fault tests -----------------------------------------------


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Polls a state until it holds or the deadline passes (never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """Makes every write into ``folder`` fail until the block ends. chmod does
    not stop root, so as root the folder is moved aside and a regular file
    takes its place (creating anything below a file fails for root too)."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    aside = folder.with_name(folder.name + ".aside")
    folder.rename(aside)
    folder.write_bytes(b"")
    try:
        yield
    finally:
        # Swapped back in one step: between an unlink and a rename a writer
        # that makes its parents (mkdir(parents=True)) would create the
        # folder anew and the rename would fail on it.
        _exchange(aside, folder)
        aside.unlink()


def _exchange(first: Path, second: Path) -> None:
    """Swaps two paths atomically (Linux renameat2 RENAME_EXCHANGE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange):
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), str(first))


def saver_status(tracker: PerformanceTracker) -> dict[str, object]:
    status = tracker.saver_status()
    assert status is not None
    return status


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` in a child with a deadline, so a start-up that blocks
    fails the test (TimeoutExpired) instead of hanging it."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )


# -- saves racing each other ------------------------------------------------------


def test_explicit_saves_racing_the_background_saver_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "tracker.snapshot"
    clock = ManualClock(START_MS)
    # A 1 ms interval keeps the saver writing nearly all the time.
    tracker = PerformanceTracker(clock=clock, snapshot_path=path, snapshot_interval_s=0.001)
    calls = 300
    failures = []
    for i in range(calls):
        tracker.record("m", "r", "t", i % 3 != 0, 1.0)
        try:
            tracker.save()
        except SnapshotError as exc:
            failures.append(str(exc))
    assert failures == [], f"{len(failures)} of {calls} saves failed, first: {failures[0]}"
    assert saver_status(tracker)["failures"] == 0
    tracker.close()
    restored = PerformanceTracker(clock=clock, snapshot_path=path)
    assert restored.restore_warning is None
    assert restored.stats("m").lifetime_requests == calls
    assert restored.stats("m").lifetime_successes == sum(1 for i in range(calls) if i % 3 != 0)
    restored.close()


# -- what is not a regular file ---------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".prev"])
def test_a_named_pipe_at_the_snapshot_path_is_refused_without_blocking(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / "tracker.snapshot"
    pipe = path.with_name(path.name + suffix)
    os.mkfifo(pipe)
    done = run_python(
        f"import zeta_fast\nzeta_fast.PerformanceTracker(snapshot_path={str(path)!r})"
    )
    assert done.returncode != 0
    assert "SnapshotError" in done.stderr, done.stderr
    assert f"{pipe} is a named pipe" in done.stderr, done.stderr


def test_a_folder_at_the_snapshot_path_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tracker.snapshot"
    path.mkdir()
    with pytest.raises(SnapshotError, match=f"{path} is a directory, not a regular file"):
        PerformanceTracker(snapshot_path=path)


def test_a_symlink_to_a_snapshot_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "real.snapshot"
    clock = ManualClock(START_MS)
    filled(real, clock).close()
    link = tmp_path / "link.snapshot"
    link.symlink_to(real)
    restored = PerformanceTracker(clock=clock, snapshot_path=link)
    assert restored.stats("m").lifetime_requests == 100
    restored.close()


def test_a_named_pipe_at_the_learned_state_path_is_refused_without_blocking(
    tmp_path: Path,
) -> None:
    path = tmp_path / "learned.bin"
    os.mkfifo(path)
    done = run_python(
        "from pathlib import Path\n"
        "from zeta_fast.learning import OutcomePredictor\n"
        "from zeta_fast.runtime import LearnedStateSaver\n"
        f"LearnedStateSaver(OutcomePredictor(['a', 'b']), Path({str(path)!r}), 1.0).load()\n"
    )
    assert done.returncode != 0
    assert "SnapshotError" in done.stderr, done.stderr
    assert f"{path} is a named pipe" in done.stderr, done.stderr


# -- the learned state's file -----------------------------------------------------

HEADER_LEN = 24  # magic 8, format version 4, payload length 8, CRC-32 4


def trained(updates: int = 40) -> OutcomePredictor:
    predictor = OutcomePredictor(["a", "b"])
    for i in range(updates):
        features = text_features(f"question {i} about topic {i * 7 % 13}", [f"c{i % 3}"])
        predictor.update(features, [i % 2 == 0, i % 3 == 0], category=f"c{i % 3}")
    return predictor


def saved_learned_state(path: Path, updates: int = 40) -> OutcomePredictor:
    predictor = trained(updates)
    assert LearnedStateSaver(predictor, path, 60.0).save()
    return predictor


def loaded(path: Path) -> OutcomePredictor:
    fresh = OutcomePredictor(["a", "b"])
    assert LearnedStateSaver(fresh, path, 60.0).load()
    return fresh


def test_the_learned_state_round_trips_through_its_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "learned.bin"
    predictor = saved_learned_state(path)
    assert path.read_bytes()[:8] == b"ZETALRND"
    restored = loaded(path)
    assert restored.updates == predictor.updates
    assert sorted(restored.categories()) == sorted(predictor.categories())
    probe = text_features("question 3 about topic 8", ["c0"])
    assert list(restored.utility(probe, "c0")) == list(predictor.utility(probe, "c0"))


def flipped(offset: int) -> Callable[[bytes], bytes]:
    def damage(data: bytes) -> bytes:
        out = bytearray(data)
        out[offset if offset >= 0 else len(out) + offset] ^= 0x10
        return bytes(out)

    return damage


def middle(data: bytes) -> bytes:
    # The payload is nearly all weights (index, f64 pairs): its middle is in one.
    return flipped(HEADER_LEN + (len(data) - HEADER_LEN) // 2)(data)


LEARNED_DAMAGE = [
    pytest.param(flipped(0), "bad magic bytes", id="magic"),
    pytest.param(flipped(8), "format version", id="version"),
    pytest.param(flipped(12), "truncated|corrupted", id="length"),
    pytest.param(flipped(20), "checksum", id="crc"),
    pytest.param(middle, "checksum", id="weight"),
    pytest.param(flipped(-1), "checksum", id="last-byte"),
    pytest.param(lambda d: d[:-9], "truncated", id="cut-payload"),
    pytest.param(lambda d: d[:10], "truncated", id="cut-header"),
    pytest.param(lambda d: d[HEADER_LEN:], "written before", id="old-unframed"),
]


@pytest.mark.parametrize(("damage", "reason"), LEARNED_DAMAGE)
def test_a_damaged_learned_state_is_refused(
    tmp_path: Path, damage: Callable[[bytes], bytes], reason: str
) -> None:
    path = tmp_path / "learned.bin"
    saved_learned_state(path)
    path.write_bytes(damage(path.read_bytes()))
    fresh = OutcomePredictor(["a", "b"])
    with pytest.raises(SnapshotError, match=f"no usable learned state: {path} .*({reason})"):
        LearnedStateSaver(fresh, path, 60.0).load()
    assert fresh.updates == 0


@pytest.mark.parametrize(("damage", "reason"), LEARNED_DAMAGE[:6])
def test_a_damaged_learned_state_falls_back_to_the_previous_one(
    tmp_path: Path, damage: Callable[[bytes], bytes], reason: str
) -> None:
    path = tmp_path / "learned.bin"
    predictor = saved_learned_state(path, updates=10)
    previous = predictor.updates
    predictor.update(text_features("one more"), [True, True])
    assert LearnedStateSaver(predictor, path, 60.0).save()
    path.write_bytes(damage(path.read_bytes()))
    with pytest.warns(SnapshotWarning, match=reason):
        restored = loaded(path)
    assert restored.updates == previous


def test_a_damaged_state_given_to_restore_is_refused() -> None:
    data = bytearray(trained().to_bytes())
    data[-1] ^= 0x01
    with pytest.raises(SnapshotError, match="checksum"):
        OutcomePredictor(["a", "b"]).restore(bytes(data))


# -- failing saves ----------------------------------------------------------------


def test_the_saver_outlives_a_failing_folder_and_saves_again_when_it_clears(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "state"
    path = folder / "tracker.snapshot"
    clock = ManualClock(START_MS)
    tracker = PerformanceTracker(clock=clock, snapshot_path=path, snapshot_interval_s=0.005)
    tracker.record("m", "r", "t", True, 1.0)
    with unwritable(folder):
        assert wait_for(lambda: int(saver_status(tracker)["failures"]) >= 2)
        assert f"cannot write {path}" in str(saver_status(tracker)["last_error"])
        with pytest.raises(SnapshotError, match="cannot write"):
            tracker.save()
    saves = int(saver_status(tracker)["saves"])
    # The background thread is alive: it saves again once the folder is back.
    assert wait_for(lambda: int(saver_status(tracker)["saves"]) > saves)
    tracker.record("m", "r", "t", False, 1.0)
    tracker.close()  # the final save succeeded: earlier failures are history
    restored = PerformanceTracker(clock=clock, snapshot_path=path)
    assert restored.stats("m").lifetime_requests == 2
    restored.close()


def test_close_raises_when_the_final_save_fails(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    path = folder / "tracker.snapshot"
    tracker = PerformanceTracker(snapshot_path=path, snapshot_interval_s=3600)
    tracker.record("m", "r", "t", True, 1.0)
    with unwritable(folder), pytest.raises(SnapshotError, match=f"final save failed.*{path}"):
        tracker.close()
    assert tracker.saver_status() is None
    tracker.close()  # closed: nothing left to save, nothing to raise


def test_a_final_save_failing_at_interpreter_exit_is_printed(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    path = folder / "tracker.snapshot"
    # The folder is swapped for a regular file before exit: the final save
    # fails (for root too), and nobody is left to catch an exception.
    script = (
        "import os, zeta_fast\n"
        f"t = zeta_fast.PerformanceTracker(snapshot_path={str(path)!r}, snapshot_interval_s=3600)\n"
        "t.record('m', 'r', 't', True, 1.0)\n"
        f"os.rename({str(folder)!r}, {str(folder) + '.aside'!r})\n"
        f"open({str(folder)!r}, 'w').close()\n"
    )
    done = run_python(script)
    assert done.returncode == 0, done.stderr
    assert "RuntimeWarning" in done.stderr, done.stderr
    assert f"final save failed: cannot write {path}" in done.stderr, done.stderr


def test_the_learned_state_saver_outlives_a_failed_save(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="zeta_fast.router")
    folder = tmp_path / "state"
    folder.mkdir()
    path = folder / "learned.bin"
    predictor = trained()
    saver = LearnedStateSaver(predictor, path, 0.005)
    with unwritable(folder):
        saver.start()

        def warned() -> bool:
            return any("could not save the learned state" in r.getMessage() for r in caplog.records)

        assert wait_for(warned)
        assert saver._thread is not None
        assert saver._thread.is_alive()
    # A later save by the same thread succeeds once the folder is back.
    assert wait_for(path.exists)
    saver.stop()
    assert loaded(path).updates == predictor.updates
