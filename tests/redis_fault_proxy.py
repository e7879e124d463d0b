"""A TCP relay in front of a real Redis server that dies at a chosen command.

The HTTP fault proxy (``zeta_fast.local.fault_proxy``) cannot find requests
in Redis's protocol, so this one reads just enough RESP to know where each
command and each reply ends, and cuts the connection exactly there:

- at a command (``in_reply=False``): that command and a few bytes of the
  next reach the server, then the relay hangs up, so the server runs exactly
  the commands up to the cut and drops the torn one (a pipeline cut in the
  middle);
- in a reply (``in_reply=True``): every command sent so far reaches the
  server (it ran them), and the client gets a few bytes of that command's
  reply before the relay hangs up (the answer lost in flight).

With ``stay_down`` the server then looks dead to every client until
``heal()``: open connections are dropped, new ones closed on accept.
Without it only the one connection is cut (a blip the client may retry).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType

__all__ = ["Command", "RedisFaultProxy"]

#: A command as its arguments, the name first (``[b"HSET", b"key", ...]``).
Command = list[bytes]

# Bytes of the torn command or reply that still go through at a cut.
_TORN_BYTES = 3
_READ_SIZE = 64 * 1024
_JOIN_TIMEOUT_S = 10.0


def _line_end(buf: bytes | bytearray, start: int) -> int | None:
    end = buf.find(b"\r\n", start)
    return None if end < 0 else end + 2


def parse_command(buf: bytes | bytearray, start: int = 0) -> tuple[Command, int] | None:
    """One request (an array of bulk strings, as redis-py sends them) from
    ``start``: its arguments and where it ends; None while incomplete."""
    end = _line_end(buf, start)
    if end is None:
        return None
    if buf[start : start + 1] != b"*":
        raise ValueError(f"not a RESP command: {bytes(buf[start : start + 20])!r}")
    args: Command = []
    for _ in range(int(buf[start + 1 : end - 2])):
        head_end = _line_end(buf, end)
        if head_end is None:
            return None
        length = int(buf[end + 1 : head_end - 2])
        if len(buf) < head_end + length + 2:
            return None
        args.append(bytes(buf[head_end : head_end + length]))
        end = head_end + length + 2
    return args, end


def reply_end(buf: bytes | bytearray, start: int = 0) -> int | None:
    """Where the reply (RESP2 or RESP3) starting at ``start`` ends; None while incomplete."""
    end = _line_end(buf, start)
    if end is None:
        return None
    kind, header = buf[start : start + 1], buf[start + 1 : end - 2]
    if kind in (b"$", b"!", b"="):  # bulk string, blob error, verbatim string
        length = int(header)
        if length < 0:
            return end
        return end + length + 2 if len(buf) >= end + length + 2 else None
    if kind in (b"*", b"~", b">", b"%", b"|"):  # array, set, push, map, attributes
        count = int(header)
        items = 2 * count if kind in (b"%", b"|") else max(count, 0)
        for _ in range(items):
            item_end = reply_end(buf, end)
            if item_end is None:
                return None
            end = item_end
        if kind == b"|":  # attributes precede the reply they annotate
            return reply_end(buf, end)
        return end
    return end  # a one-line reply: + - : _ # , (


class _Cut:
    def __init__(self, matches: Callable[[Command], bool], in_reply: bool, stay_down: bool):
        self.matches = matches
        self.in_reply = in_reply
        self.stay_down = stay_down


class _Connection:
    """One client connection and its own connection to the server."""

    def __init__(self, proxy: RedisFaultProxy, client: socket.socket, server: socket.socket):
        self.proxy = proxy
        self.client = client
        self.server = server
        # Commands sent and not answered yet, oldest first: replies come in order.
        self.pending: deque[Command] = deque()
        self.closed = False
        self.threads = [
            threading.Thread(target=self._requests, daemon=True, name="redis-proxy-up"),
            threading.Thread(target=self._replies, daemon=True, name="redis-proxy-down"),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def hang_up(self) -> None:
        """Server side first: it gets what was relayed, then its end of file."""
        with self.proxy._lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.server, self.client):
            with contextlib.suppress(OSError):  # the peer is gone already
                sock.shutdown(socket.SHUT_RDWR)

    def _requests(self) -> None:
        buf = bytearray()
        try:
            while data := self.client.recv(_READ_SIZE):
                buf += data
                while (parsed := parse_command(buf)) is not None:
                    command, end = parsed
                    raw = bytes(buf[:end])
                    del buf[:end]
                    cut = self.proxy._take_cut(command, in_reply=False)
                    self.pending.append(command)
                    self.server.sendall(raw)
                    if cut is not None:
                        self.server.sendall(bytes(buf[:_TORN_BYTES]))
                        self.proxy._went_down(self, cut)
                        return
        except OSError:
            pass
        finally:
            self.hang_up()

    def _replies(self) -> None:
        buf = bytearray()
        try:
            while data := self.server.recv(_READ_SIZE):
                buf += data
                while (end := reply_end(buf)) is not None:
                    command = self.pending.popleft() if self.pending else [b"?"]
                    cut = self.proxy._take_cut(command, in_reply=True)
                    if cut is not None:
                        self.client.sendall(bytes(buf[:_TORN_BYTES]))
                        self.proxy._went_down(self, cut)
                        return
                    self.client.sendall(bytes(buf[:end]))
                    del buf[:end]
        except OSError:
            pass
        finally:
            self.hang_up()

    def close(self) -> None:
        self.hang_up()
        for thread in self.threads:
            thread.join(_JOIN_TIMEOUT_S)
        self.client.close()
        self.server.close()


class RedisFaultProxy:
    """Relays 127.0.0.1:``port`` to the Redis server at ``upstream_port``.

    Use as a context manager (or ``start()`` / ``stop()``); ``url`` is what
    clients connect to. Thread-safe.
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._cut: _Cut | None = None
        self._down = False
        self._cuts = 0
        self._commands = 0
        self._connections: list[_Connection] = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, daemon=True, name="redis-proxy")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisFaultProxy:
        self._listener.listen(64)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._listener.close()
        self._acceptor.join(_JOIN_TIMEOUT_S)
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def __enter__(self) -> RedisFaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults -----------------------------------------------------------

    def cut(
        self,
        matches: Callable[[Command], bool],
        *,
        in_reply: bool = False,
        stay_down: bool = True,
    ) -> None:
        """Arms one cut at the next command for which ``matches`` is true
        (see the module's docstring for where exactly it falls)."""
        with self._lock:
            self._cut = _Cut(matches, in_reply, stay_down)

    def heal(self) -> None:
        """The server is reachable again (and no cut is armed)."""
        with self._lock:
            self._cut = None
            self._down = False

    @property
    def cuts(self) -> int:
        """Cuts made so far."""
        with self._lock:
            return self._cuts

    @property
    def commands(self) -> int:
        """Commands relayed so far (replies to them may have been cut)."""
        with self._lock:
            return self._commands

    # -- internals --------------------------------------------------------

    def _take_cut(self, command: Command, *, in_reply: bool) -> _Cut | None:
        with self._lock:
            if not in_reply:
                self._commands += 1
            cut = self._cut
            if cut is None or cut.in_reply != in_reply or not cut.matches(command):
                return None
            self._cut = None
            self._cuts += 1
            return cut

    def _went_down(self, connection: _Connection, cut: _Cut) -> None:
        connection.hang_up()
        if not cut.stay_down:
            return
        with self._lock:
            self._down = True
            others = list(self._connections)
        for other in others:
            other.hang_up()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            with self._lock:
                down = self._down
            if down:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = _Connection(self, client, server)
            with self._lock:
                # Kept (and their sockets open) until stop(): closing a socket
                # with unread data would send a reset instead of the clean end.
                self._connections.append(connection)
            connection.start()
