"""Real llama.cpp server replicas on this machine, one process each, with faults on demand.

Each replica runs llama.cpp's own C++ HTTP server (the ``xllamacpp`` wheel embeds it) in a child
process started from this module's entry point::

    python -m zeta_fast.local.llamacpp --model tiny.gguf --alias small [--port 0] [--embedding]

The child prints one line, ``LISTENING <url>``, once the server is up, then waits for SIGTERM or
SIGINT. :class:`LlamaCppReplica` starts such a child, waits until ``/health`` answers and can
stop, kill (SIGKILL), pause (SIGSTOP), resume (SIGCONT) and restart it on the same port, so
clients and routers can be tested against real servers that fail in real ways.

Example:
    >>> import json, tempfile, urllib.request
    >>> from zeta_fast.local import LlamaCppReplica, ensure_tiny_model
    >>> model = ensure_tiny_model(tempfile.mkdtemp())
    >>> with LlamaCppReplica(model, alias="small") as replica:
    ...     with urllib.request.urlopen(f"{replica.url}/health") as response:
    ...         json.load(response)
    {'status': 'ok'}
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["LlamaCppReplica", "main", "start_replicas"]

HOST = "127.0.0.1"
LISTENING_PREFIX = "LISTENING "
# A tiny model is ready in ~0.4 s; 30 s leaves room for a loaded CI machine and larger models.
DEFAULT_STARTUP_TIMEOUT_S = 30.0
# llama.cpp exits ~0.03 s after SIGTERM; anything slower than this is hung and gets SIGKILL.
DEFAULT_STOP_TIMEOUT_S = 5.0
# How often the child checks whether its parent is gone: the delay before an orphan exits.
_PARENT_POLL_S = 0.2
_HEALTH_POLL_S = 0.02
_LOG_TAIL_BYTES = 2000


# --------------------------------------------------------------------------------------------
# The child: one llama.cpp server per process.
# --------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = server_parser(
        "python -m zeta_fast.local.llamacpp",
        "Run one llama.cpp server (xllamacpp) until SIGTERM or SIGINT.",
    )
    parser.add_argument("--embedding", action="store_true", help="serve /v1/embeddings")
    return parser.parse_args(argv)


def server_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The arguments every launcher of this package takes (what ``serve`` reads)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--model", required=True, help="path of a GGUF model")
    parser.add_argument("--alias", required=True, help="model name the server reports")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ctx", type=int, default=2048, help="context size, shared by slots")
    parser.add_argument("--parallel", type=int, default=4, help="slots (concurrent requests)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for decoding")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one llama.cpp server until SIGTERM or SIGINT (the module's entry point).

    Prints ``LISTENING <url>`` to stdout once the server accepts connections. Exits on its own
    when the process that started it dies, so no server outlives its test run.

    Args:
        argv: Command-line arguments; ``sys.argv[1:]`` when None.

    Returns:
        The exit status: 0 after a clean shutdown.
    """
    args = _parse_args(argv)

    def embedding(params: Any, xllamacpp: Any) -> None:
        if args.embedding:
            params.embedding = True
            params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN

    return serve(args, embedding)


def serve(args: argparse.Namespace, configure: Callable[[Any, Any], None]) -> int:
    """Runs one server for ``args`` (``model``, ``alias``, ``port``, ``ctx``, ``parallel``,
    ``threads``) until SIGTERM or SIGINT; ``configure(params, xllamacpp)`` sets anything more
    on its ``CommonParams`` before it starts (the launchers of this package share the rest)."""
    parent = os.getppid()
    # Block the stop signals before the server starts its threads (they inherit the mask), so
    # the signals wait for sigwait below instead of killing the process mid-request.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    # Imported here: the 34 MB extension is only needed in the server process.
    import xllamacpp  # type: ignore[import-untyped]

    params = xllamacpp.CommonParams()
    params.model.path = str(args.model)
    params.model_alias = {args.alias}
    params.hostnames = [HOST]
    params.port = args.port
    params.n_ctx = args.ctx
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.endpoint_metrics = True
    params.endpoint_slots = True
    configure(params, xllamacpp)
    server = xllamacpp.Server(params)
    print(f"{LISTENING_PREFIX}{server.listening_address}", flush=True)
    # The parent stops reading after that line; anything written later (llama.cpp may print)
    # would hit a closed pipe, so stdout goes to /dev/null from here on.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)

    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    # Not sigtimedwait in a loop: after SIGSTOP + SIGCONT (pause/resume) it can return a
    # garbage siginfo instead of None once its timeout has passed (CPython 3.11), which looked
    # like a stop signal and shut the server down. sigwait has no timeout to get wrong.
    signal.sigwait(stop_signals)
    del server  # joins llama.cpp's main loop: ~2 ms
    return 0


def _wait_stopped(pid: int, *, deadline: float) -> None:
    """Waits until every thread of ``pid`` is stopped (state ``T`` in ``/proc``), or the
    deadline passes, or the process is gone; without ``/proc`` it returns at once."""
    tasks = Path(f"/proc/{pid}/task")
    while time.monotonic() < deadline:
        try:
            threads = list(tasks.iterdir())
        except OSError:
            return  # gone, or no /proc here
        states = []
        for task in threads:
            try:
                # The state follows the command name's closing parenthesis.
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            except (OSError, IndexError):
                continue  # a thread that ended meanwhile
        if all(state in ("T", "t") for state in states):
            return
        time.sleep(0.001)


def _exit_with_parent(parent: int) -> None:
    """Send ourselves SIGTERM once the process that started us is gone.

    Polls the parent id rather than using prctl(PR_SET_PDEATHSIG): that signal fires when the
    *thread* that forked us exits, which would kill servers started from a worker thread.
    """
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)


# --------------------------------------------------------------------------------------------
# The parent: start, watch and break replicas.
# --------------------------------------------------------------------------------------------

_LIVE: weakref.WeakSet[LlamaCppReplica] = weakref.WeakSet()


@atexit.register
def _stop_live_replicas() -> None:
    for replica in list(_LIVE):
        replica.kill()
        replica._remove_log()


class LlamaCppReplica:
    """One real llama.cpp server in its own process, on 127.0.0.1.

    Not started on construction: call :meth:`start` or use it as a context manager. Every
    process is reaped by :meth:`stop` or :meth:`kill`, and any still running when the replica is
    garbage collected or the interpreter exits is killed; the child also exits by itself if
    its parent dies.

    Args:
        model: Path of a GGUF model (see :func:`~zeta_fast.local.ensure_tiny_model`).
        alias: Model name the server reports; defaults to the model file's stem.
        port: TCP port; 0 lets the server pick a free one, which :meth:`restart` then reuses.
        ctx: Context size in tokens, split evenly between the slots.
        parallel: Number of slots, i.e. requests decoded concurrently; more requests queue.
        threads: CPU threads for decoding. One by default, so several replicas share a small
            machine without fighting over cores.
        embedding: Serve ``/v1/embeddings`` (mean pooling) instead of generation.
        startup_timeout_s: How long :meth:`start` waits for ``/health`` to answer 200.
        log_path: Where the server's log (stderr) goes; a temporary file, removed by
            :meth:`stop`, when None.

    Raises:
        ValueError: A numeric argument is out of range.

    Example:
        >>> replica = LlamaCppReplica("tiny.gguf", alias="small").start()  # doctest: +SKIP
        >>> replica.pause()  # requests now time out  # doctest: +SKIP
        >>> replica.resume()  # doctest: +SKIP
        >>> replica.kill()  # connections are refused  # doctest: +SKIP
        >>> replica.restart()  # same port, answers again  # doctest: +SKIP
        >>> replica.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        alias: str | None = None,
        port: int = 0,
        ctx: int = 2048,
        parallel: int = 4,
        threads: int = 1,
        embedding: bool = False,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        for name, value in (("ctx", ctx), ("parallel", parallel), ("threads", threads)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not startup_timeout_s > 0:
            raise ValueError(f"startup_timeout_s must be > 0, got {startup_timeout_s!r}")
        self.model = Path(model)
        self.alias = alias if alias is not None else self.model.stem
        self.port = port
        self.ctx = ctx
        self.parallel = parallel
        self.threads = threads
        self.embedding = embedding
        self.startup_timeout_s = startup_timeout_s
        self._user_log_path = Path(log_path) if log_path is not None else None
        self._log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._url: str | None = None
        # start/stop/kill may race with __del__ or the atexit hook on another thread.
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"LlamaCppReplica(alias={self.alias!r}, port={self.port}, {state})"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``; known once the replica has started."""
        if self._url is None:
            raise RuntimeError(f"replica {self.alias!r} has not been started")
        return self._url

    @property
    def pid(self) -> int | None:
        """Process id of the current (or, after a stop or kill, the last) server process."""
        return self._pid

    @property
    def running(self) -> bool:
        """Whether the server process exists (it may be paused)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        """File holding the server's log, while it exists."""
        return self._log_path

    def start(self) -> LlamaCppReplica:
        """Start the server and wait until ``/health`` answers 200.

        Returns:
            The replica itself, so ``LlamaCppReplica(...).start()`` chains.

        Raises:
            RuntimeError: Already running, or the server did not come up within
                ``startup_timeout_s``; the message ends with the tail of its log.
        """
        with self._lock:
            self._spawn()
            try:
                self._wait_ready(time.monotonic() + self.startup_timeout_s)
            except BaseException:
                self.kill()
                raise
        return self

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it has not exited after ``timeout_s``.

        Always reaps the process; a no-op when it is not running. A paused server is resumed
        so it can act on SIGTERM.
        """
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                self._signal(signal.SIGTERM)
                self._signal(signal.SIGCONT)
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    proc.wait()
            self._forget_process(remove_log=True)

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would: streams in flight break off.

        The process is reaped at once, so afterwards connections are refused. The port is
        kept for :meth:`restart`. A no-op when it is not running.
        """
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                self._signal(signal.SIGKILL)
                proc.wait()
            self._forget_process(remove_log=False)

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: connections are accepted but nothing is answered.

        Returns once every thread of the server is stopped (the kernel stops each thread
        when it next runs, so a request sent right after ``kill`` could still be answered
        by a thread that had not yet stopped)."""
        self._require_running("pause")
        self._signal(signal.SIGSTOP)
        proc = self._proc
        if proc is not None:
            _wait_stopped(proc.pid, deadline=time.monotonic() + DEFAULT_STOP_TIMEOUT_S)

    def resume(self) -> None:
        """Unfreeze a paused server with SIGCONT; requests waiting meanwhile then complete."""
        self._require_running("resume")
        self._signal(signal.SIGCONT)

    def restart(self) -> LlamaCppReplica:
        """Stop the server if it runs, then start it again on the same port.

        Returns:
            The replica itself.

        Raises:
            RuntimeError: The server did not come back, e.g. the port was taken meanwhile.
        """
        with self._lock:
            self.stop()
            return self.start()

    def __enter__(self) -> LlamaCppReplica:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        # Interpreter shutdown may have torn down what kill() needs; the atexit hook has
        # already handled that case, so failing quietly here loses nothing.
        with contextlib.suppress(Exception):
            self.kill()
            self._remove_log()

    # -- internals -------------------------------------------------------------------------

    def _command(self) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "zeta_fast.local.llamacpp",
            "--model",
            str(self.model),
            "--alias",
            self.alias,
            "--port",
            str(self.port),
            "--ctx",
            str(self.ctx),
            "--parallel",
            str(self.parallel),
            "--threads",
            str(self.threads),
        ]
        if self.embedding:
            command.append("--embedding")
        return command

    def _spawn(self) -> None:
        """Start the child process without waiting for it (start_replicas overlaps the waits)."""
        with self._lock:
            self._spawn_locked()

    def _spawn_locked(self) -> None:
        if self.running:
            raise RuntimeError(f"replica {self.alias!r} is already running (pid {self._pid})")
        self._forget_process(remove_log=True)
        if self._user_log_path is not None:
            self._log_path = self._user_log_path
        else:
            fd, name = tempfile.mkstemp(prefix=f"llamacpp-{self.alias}-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        self._pid = self._proc.pid
        _LIVE.add(self)

    def _wait_ready(self, deadline: float) -> None:
        proc = self._proc
        if proc is None:
            raise RuntimeError(f"replica {self.alias!r} was not spawned")
        url = self._read_listening_url(proc, deadline)
        # The port is kept so that restart() comes back where clients expect it.
        self._url = url
        self.port = int(url.rsplit(":", 1)[1])
        while True:
            if proc.poll() is not None:
                raise self._startup_error(f"exited with status {proc.returncode}")
            if _health_ok(url, timeout_s=max(0.05, min(1.0, deadline - time.monotonic()))):
                return
            if time.monotonic() >= deadline:
                raise self._startup_error(f"/health not ready after {self.startup_timeout_s} s")
            time.sleep(_HEALTH_POLL_S)

    def _read_listening_url(self, proc: subprocess.Popen[bytes], deadline: float) -> str:
        """Read the child's stdout up to its LISTENING line, then stop listening to it."""
        if proc.stdout is None:
            raise RuntimeError("child stdout is not a pipe")
        pending = b""
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace").strip()
                    if line.startswith(LISTENING_PREFIX):
                        proc.stdout.close()
                        return line[len(LISTENING_PREFIX) :].strip()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._startup_error(f"no LISTENING line after {self.startup_timeout_s} s")
                if selector.select(remaining):
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    if not chunk:
                        proc.wait(DEFAULT_STOP_TIMEOUT_S)
                        raise self._startup_error(f"exited with status {proc.returncode}")
                    pending += chunk

    def _startup_error(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"llama.cpp replica {self.alias!r} (model {self.model}, port {self.port}) failed to "
            f"start: {what}. Log tail ({self._log_path}):\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        if self._log_path is None:
            return ""
        try:
            with open(self._log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
                return log.read().decode(errors="replace")
        except OSError as exc:
            return f"<log unreadable: {exc}>"

    def _signal(self, signum: signal.Signals) -> None:
        # By PID, and only while unreaped, so a recycled PID can never be hit.
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signum)

    def _require_running(self, action: str) -> None:
        if not self.running:
            raise RuntimeError(f"cannot {action} replica {self.alias!r}: it is not running")

    def _forget_process(self, *, remove_log: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        _LIVE.discard(self)
        if remove_log:
            self._remove_log()

    def _remove_log(self) -> None:
        if self._log_path is not None and self._user_log_path is None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None


def _health_ok(url: str, *, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (OSError, http.client.HTTPException):
        # Refused, reset, timed out, or 503 while the model loads: not ready yet.
        return False


def start_replicas(replicas: Iterable[LlamaCppReplica]) -> list[LlamaCppReplica]:
    """Start several replicas at once: all processes are spawned, then each is awaited.

    The servers load concurrently, so n replicas take about as long as the slowest one rather
    than the sum. If any fails, all are stopped before the error propagates.

    Args:
        replicas: Replicas not yet running.

    Returns:
        The same replicas, in order, all answering ``/health``.

    Raises:
        RuntimeError: A replica did not start (see :meth:`LlamaCppReplica.start`).

    Example:
        >>> small, large = start_replicas(  # doctest: +SKIP
        ...     [LlamaCppReplica(small_gguf, alias="small"), LlamaCppReplica(large_gguf)]
        ... )
    """
    replicas = list(replicas)
    try:
        for replica in replicas:
            replica._spawn()
        for replica in replicas:
            replica._wait_ready(time.monotonic() + replica.startup_timeout_s)
    except BaseException:
        for replica in replicas:
            replica.stop()
        raise
    return replicas


if __name__ == "__main__":
    sys.exit(main())
