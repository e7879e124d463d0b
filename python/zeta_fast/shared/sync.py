"""Several router instances routing as one, through Redis.

Each instance keeps its lock-free windows on the request path; a background
thread (never the request path) does, every ``interval_s`` (250 ms):

1. **Publish** this instance's window as absolute counters per time bucket,
   ``{ns}:w:{bucket_ms}:{epoch}`` hashes with one field per (instance, key):
   ``"requests successes timed latency_units"``, and its latency histogram
   slices the same way (``{ns}:h:...``, sparse bins). Only fields that
   changed are written, in one pipelined batch. Each instance writes only
   its own fields, so merging is a sum: exact and independent of order. A
   bucket's hash expires once the bucket has left every window.
2. **Read** the other instances' fields of the buckets and slices in the
   window (finished buckets once, then only the newest two) and hand their
   sums to the core (``PerformanceTracker.set_remote``): scoring and
   statistics see local + remote. An instance that writes a finished
   bucket (it is back from an outage, or new with a restored window) puts
   a new random value in ``{ns}:rewritten:{bucket_ms}``; seeing it change,
   the others read every bucket again.
3. **Share in-flight load**: ``{ns}:inflight`` holds each instance's
   requests running per replica, ``{ns}:alive`` each instance's last beat;
   the live others' counts are added to replica load comparisons.

Alerts fire once across instances (:meth:`SharedState.claim_alert`, a
``SET NX PX`` per rule, model and task for its cool-down), learned
predictors are shared (:meth:`SharedState.share_learned`), and so are the
``cache_aware`` policy's placements (:meth:`SharedState.share_prefixes`:
one capped stream per model, ``{ns}:prefix:{model}``), so that every
instance knows which replica holds which conversation.

Redis down: routing goes on with local state (the remote share is cleared),
``up`` turns False, ``errors`` counts, one warning is logged per outage;
when Redis is back everything in the window is published again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

    from zeta_fast._core import PerformanceTracker, RouterCore
    from zeta_fast.config import SharedStateSpec

__all__ = [
    "SharedState",
    "SharedStateStats",
    "default_instance_id",
    "shared_client",
    "window_in_redis",
]

log = logging.getLogger("zeta_fast.shared")

_SEP = "\x1f"
# (model, replica, task)
Key = tuple[str, str, str]


@dataclass
class SharedStateStats:
    """Counters of the sync loop (for metrics pages and benchmarks)."""

    cycles: int = 0
    errors: int = 0
    commands: int = 0
    fields_written: int = 0
    last_cycle_ms: float = 0.0
    outages: int = 0
    remote_instances: int = 0
    last_error: str | None = None
    started_at: float = field(default_factory=time.monotonic)


class SharedState:
    """Publishes this instance's state to Redis and merges the others'.

    Args:
        client: a ``redis.Redis`` client (``decode_responses=False``).
        tracker: this instance's tracker.
        core: this instance's router core (for in-flight sharing), or None.
        models: model id -> its replica ids, for in-flight sharing.
        namespace: key prefix shared by the instances that route as one.
        instance_id: this instance's name (unique among them).
        interval_s: how often to publish and merge.
        stale_after_s: an instance silent this long no longer counts for
            in-flight load (its window data stays until it expires).
    """

    def __init__(
        self,
        client: redis.Redis,
        tracker: PerformanceTracker,
        core: RouterCore | None = None,
        models: dict[str, list[str]] | None = None,
        *,
        namespace: str = "zeta",
        instance_id: str | None = None,
        interval_s: float = 0.25,
        stale_after_s: float = 2.0,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        if _SEP in namespace or not namespace:
            raise ValueError(f"namespace must be non-empty without \\x1f, got {namespace!r}")
        self.client = client
        self.tracker = tracker
        self.core = core
        self.models = dict(models or {})
        self.namespace = namespace
        self.instance_id = instance_id or default_instance_id()
        if _SEP in self.instance_id:
            raise ValueError(f"instance_id must not contain \\x1f, got {self.instance_id!r}")
        self.interval_s = interval_s
        self.stale_after_s = stale_after_s
        self.stats = SharedStateStats()
        self.up = False
        #: Called with this object after each successful cycle (in the sync
        #: thread); an exception is logged and does not stop the loop.
        self.on_cycle: list[Callable[[SharedState], None]] = []
        self._published: dict[tuple[str, str], bytes] = {}
        self._cache: dict[str, dict[bytes, bytes]] = {}
        # The {ns}:rewritten value last seen, and the one _cache was read under.
        self._rewritten: bytes | None = None
        self._cache_rewritten: bytes | None = None
        self._in_flight_published: dict[str, int] = {}
        # Per model: the last entry of its placement stream read here.
        self._prefix_seen: dict[str, bytes] = {}
        # Proof that Redis still holds what this instance wrote.
        self._token = uuid.uuid4().hex.encode()
        self._token_set = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        epoch, oldest, slice_now, oldest_slice, bucket_ms, _ = tracker.shared_epochs()
        self.bucket_ms = bucket_ms
        buckets = epoch - oldest + 1
        slices = slice_now - oldest_slice + 1
        self._bucket_ttl_ms = (buckets + 2) * bucket_ms
        self._slice_ttl_ms = (slices + 1) * (buckets // max(slices, 1)) * bucket_ms + bucket_ms

    # -- keys -------------------------------------------------------------------

    def _bucket_key(self, epoch: int) -> str:
        return f"{self.namespace}:w:{self.bucket_ms}:{epoch}"

    def _slice_key(self, slice_epoch: int) -> str:
        return f"{self.namespace}:h:{self.bucket_ms}:{slice_epoch}"

    @property
    def _rewritten_key(self) -> str:
        return f"{self.namespace}:rewritten:{self.bucket_ms}"

    @property
    def _inflight_key(self) -> str:
        return f"{self.namespace}:inflight"

    @property
    def _alive_key(self) -> str:
        return f"{self.namespace}:alive"

    # -- the loop -----------------------------------------------------------------

    def start(self) -> SharedState:
        """Runs one cycle now (so a new instance starts warm), then every
        ``interval_s`` in a daemon thread."""
        self.cycle()
        self._thread = threading.Thread(target=self._run, name="zeta-fast-shared", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.cycle()

    def stop(self, *, withdraw_in_flight: bool = True) -> None:
        """Stops the loop after a last publish; an instance stopping cleanly
        takes its in-flight counts and beat away (its window data stays
        until it expires, like any finished bucket)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.cycle()
        if withdraw_in_flight and self.up:
            try:
                fields = [
                    _SEP.join((self.instance_id, m, r)) for m, rs in self.models.items() for r in rs
                ]
                pipe = self.client.pipeline(transaction=False)
                if fields:
                    pipe.hdel(self._inflight_key, *fields)
                pipe.zrem(self._alive_key, self.instance_id)
                pipe.execute()
            except Exception as exc:  # best effort: Redis may be gone
                log.debug("could not withdraw %s from shared state: %s", self.instance_id, exc)

    def cycle(self) -> bool:
        """One publish + merge; False when Redis could not be reached."""
        with self._lock:
            started = time.perf_counter()
            try:
                self._publish()
                self._merge()
            except Exception as exc:  # redis errors, timeouts, refused connections
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                if self.up or self.stats.cycles == 0:
                    self.stats.outages += 1
                    log.warning(
                        "shared state unavailable (%s): routing on local state until it returns",
                        exc,
                    )
                self.up = False
                # Local state only; and publish everything again once back.
                self.tracker.set_remote([])
                if self.core is not None:
                    for model, replicas in self.models.items():
                        self.core.set_remote_in_flight(model, [0] * len(replicas))
                self._published.clear()
                self._cache.clear()
                self._in_flight_published.clear()
                return False
            finally:
                self.stats.cycles += 1
                self.stats.last_cycle_ms = (time.perf_counter() - started) * 1e3
            if not self.up and self.stats.cycles > 1:
                log.warning("shared state is back: state published again")
            self.up = True
            for callback in self.on_cycle:
                try:
                    callback(self)
                except Exception:  # e.g. a peer's learned state of another version
                    self.stats.errors += 1
                    log.exception("shared state: a cycle callback failed")
            return True

    # -- publishing ---------------------------------------------------------------

    def _publish(self) -> None:
        if not self._publish_once():
            # Redis lost what this instance had published (a restart, a
            # flush, an eviction) without this instance seeing an error:
            # publish the whole window again.
            self._published.clear()
            self._in_flight_published.clear()
            self._publish_once()

    def _publish_once(self) -> bool:
        """Writes what changed; False when Redis had lost this instance's
        earlier writes (its token was gone)."""
        me = self.instance_id
        writes: dict[str, dict[str, bytes]] = {}
        published: dict[tuple[str, str], bytes] = {}
        exported = self.tracker.export_shared()
        epoch_now, _, slice_now, _, _, _ = self.tracker.shared_epochs()
        # Whether a bucket or slice the others may have read for the last
        # time (older than the newest two, see _merge) is written.
        rewrites_finished = False
        for model, replica, task, buckets, slices in exported:
            name = _SEP.join((me, model, replica, task))
            for epoch, requests, successes, timed, units in buckets:
                key = self._bucket_key(epoch)
                value = f"{requests} {successes} {timed} {units}".encode()
                published[key, name] = value
                if self._published.get((key, name)) != value:
                    writes.setdefault(key, {})[name] = value
                    rewrites_finished |= epoch < epoch_now - 1
            for slice_epoch, bins in slices:
                key = self._slice_key(slice_epoch)
                value = ",".join(f"{b}:{c}" for b, c in bins).encode()
                published[key, name] = value
                if self._published.get((key, name)) != value:
                    writes.setdefault(key, {})[name] = value
                    rewrites_finished |= slice_epoch < slice_now - 1
        pipe = self.client.pipeline(transaction=False)
        token_key = f"{self.namespace}:token:{me}"
        pipe.get(token_key)
        commands = 1
        for key, fields in writes.items():
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            ttl = self._slice_ttl_ms if ":h:" in key else self._bucket_ttl_ms
            pipe.pexpire(key, ttl)
            commands += 2
            self.stats.fields_written += len(fields)
        now_ms = int(time.time() * 1000)
        if self.core is not None:
            in_flight: dict[str, int] = {}
            for model, replicas in self.models.items():
                for replica, count in zip(replicas, self.core.in_flight(model), strict=True):
                    in_flight[_SEP.join((me, model, replica))] = count
            changed = {k: v for k, v in in_flight.items() if self._in_flight_published.get(k) != v}
            if changed:
                pipe.hset(self._inflight_key, mapping=changed)  # type: ignore[arg-type]
                commands += 1
            self._in_flight_published = in_flight
        pipe.zadd(self._alive_key, {me: now_ms})
        pipe.set(token_key, self._token, px=self._bucket_ttl_ms)
        commands += 2
        if rewrites_finished:
            # After the writes: whoever sees the new value sees them too.
            pipe.set(self._rewritten_key, uuid.uuid4().hex, px=self._bucket_ttl_ms)
            commands += 1
        pipe.get(self._rewritten_key)
        commands += 1
        results = pipe.execute()
        self.stats.commands += commands
        # Only what was written counts as published: a failed batch is redone.
        self._published = published
        self._rewritten = results[-1]
        return results[0] == self._token or not self._had_token()

    def _had_token(self) -> bool:
        """True from the second publish on: the first finds no token."""
        had, self._token_set = self._token_set, True
        return had

    # -- merging ------------------------------------------------------------------

    def _merge(self) -> None:
        if self._rewritten != self._cache_rewritten:
            # Some instance wrote a finished bucket since the cache was read.
            self._cache.clear()
            self._cache_rewritten = self._rewritten
        epoch, oldest, slice_now, oldest_slice, _, _ = self.tracker.shared_epochs()
        keys = [self._bucket_key(e) for e in range(oldest, epoch + 1)]
        keys += [self._slice_key(s) for s in range(oldest_slice, slice_now + 1)]
        fresh = {self._bucket_key(epoch), self._bucket_key(epoch - 1)}
        fresh |= {self._slice_key(slice_now), self._slice_key(slice_now - 1)}
        wanted = [k for k in keys if k in fresh or k not in self._cache]
        pipe = self.client.pipeline(transaction=False)
        for key in wanted:
            pipe.hgetall(key)
        pipe.hgetall(self._inflight_key)
        pipe.zrangebyscore(self._alive_key, int((time.time() - self.stale_after_s) * 1000), "+inf")
        results = pipe.execute()
        self.stats.commands += len(wanted) + 2
        for key, value in zip(wanted, results, strict=False):
            self._cache[key] = value
        in_window = set(keys)
        for stale in [k for k in self._cache if k not in in_window]:
            del self._cache[stale]
        me = self.instance_id.encode()
        totals: dict[Key, list[int]] = {}
        histograms: dict[Key, dict[int, int]] = {}
        for key in keys:
            for raw_name, raw_value in self._cache.get(key, {}).items():
                instance, model, replica, task = raw_name.split(_SEP.encode())
                if instance == me:
                    continue
                name = (model.decode(), replica.decode(), task.decode())
                if ":h:" in key:
                    bins = histograms.setdefault(name, {})
                    for bin_count in raw_value.split(b","):
                        b, c = bin_count.split(b":")
                        bins[int(b)] = bins.get(int(b), 0) + int(c)
                else:
                    r, s, t, u = (int(x) for x in raw_value.split())
                    entry = totals.setdefault(name, [0, 0, 0, 0])
                    entry[0] += r
                    entry[1] += s
                    entry[2] += t
                    entry[3] += u
        entries = [
            (
                m,
                r,
                t,
                tuple(totals.get((m, r, t), (0, 0, 0, 0))),
                sorted(histograms.get((m, r, t), {}).items()),
            )
            for (m, r, t) in set(totals) | set(histograms)
        ]
        self.tracker.set_remote(entries)  # type: ignore[arg-type]
        alive = {a for a in results[-1] if a != me}
        # Live others (a beat within stale_after_s), whether or not they had traffic.
        self.stats.remote_instances = len(alive)
        if self.core is not None:
            raw_in_flight = results[-2]
            remote: dict[tuple[str, str], int] = {}
            for raw_field, raw_count in raw_in_flight.items():
                owner, raw_model, raw_replica = raw_field.split(_SEP.encode())
                if owner in alive:
                    pair = (raw_model.decode(), raw_replica.decode())
                    remote[pair] = remote.get(pair, 0) + int(raw_count)
            for model_id, replica_ids in self.models.items():
                self.core.set_remote_in_flight(
                    model_id, [remote.get((model_id, r), 0) for r in replica_ids]
                )

    # -- alerts and learned state -----------------------------------------------------

    def claim_alert(self, rule: str, model: str, task: str | None, cooldown_s: float) -> bool:
        """True for exactly one instance per (rule, model, task) and cool-down:
        that instance fires the alert. True as well when Redis is down
        (better two alerts than none)."""
        key = f"{self.namespace}:alert:{rule}:{model}:{task or '*'}"
        try:
            claimed = self.client.set(
                key, self.instance_id, nx=True, px=max(int(cooldown_s * 1000), 1)
            )
            self.stats.commands += 1
        except Exception as exc:
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            return True
        return bool(claimed)

    def share_prefixes(self, core: RouterCore, models: list[str], keep: int = 10_000) -> int:
        """Publishes the placements this instance's ``cache_aware`` models
        made since the last call (``core.export_prefix``) and applies the
        other instances' (``core.import_prefix``), through one stream per
        model capped at about ``keep`` entries; the count applied. A new
        instance reads the whole stream first, so it starts knowing where
        the conversations are. Redis down: 0, counted in ``errors``; the
        placements of that cycle are lost (the sessions they bound rebind
        at their next request)."""
        applied = 0
        try:
            pipe = self.client.pipeline(transaction=False)
            for model in models:
                data, dropped = core.export_prefix(model)
                if dropped:
                    log.warning("shared prefixes: %d placements of %s not shared", dropped, model)
                if data:
                    pipe.xadd(
                        f"{self.namespace}:prefix:{model}",
                        {"i": self.instance_id, "d": data},
                        maxlen=keep,
                        approximate=True,
                    )
            for model in models:
                pipe.xread(
                    {f"{self.namespace}:prefix:{model}": self._prefix_seen.get(model, b"0-0")},
                    count=keep,
                )
            replies = pipe.execute()
            self.stats.commands += len(replies)
        except Exception as exc:
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            return 0
        me = self.instance_id.encode()
        for model, reply in zip(models, replies[len(replies) - len(models) :], strict=True):
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self._prefix_seen[model] = entry_id
                    if fields.get(b"i") == me:
                        continue
                    try:
                        applied += core.import_prefix(model, fields.get(b"d", b""))
                    except ValueError as exc:  # a record from another version, or corrupt
                        self.stats.errors += 1
                        log.warning("shared prefixes: a record for %s refused: %s", model, exc)
        return applied

    def share_learned(self, state: bytes, ttl_s: float = 3600.0) -> list[bytes]:
        """Publishes this instance's learned state and returns the other live
        instances' (for averaging); [] when Redis is down."""
        key = f"{self.namespace}:learned"
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(key, self.instance_id, state)
            pipe.pexpire(key, int(ttl_s * 1000))
            pipe.hgetall(key)
            pipe.zrangebyscore(self._alive_key, int((time.time() - ttl_s) * 1000), "+inf")
            _, _, states, alive = pipe.execute()
            self.stats.commands += 4
        except Exception as exc:
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            return []
        me = self.instance_id.encode()
        live = set(alive)
        return [v for k, v in states.items() if k != me and k in live]


def window_in_redis(
    client: redis.Redis, namespace: str, bucket_ms: int, buckets: int, now_ms: int | None = None
) -> bool:
    """Whether any instance's window is in Redis now: a new instance then
    starts from it rather than from its own snapshot.

    Raises:
        redis.RedisError: Redis cannot be reached.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    epoch = now // bucket_ms
    pipe = client.pipeline(transaction=False)
    for e in range(max(epoch - buckets + 1, 0), epoch + 1):
        pipe.exists(f"{namespace}:w:{bucket_ms}:{e}")
    return any(pipe.execute())


def default_instance_id() -> str:
    """host-pid-random: unique per process, readable in Redis."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def shared_client(spec: SharedStateSpec) -> redis.Redis:
    """The Redis client of a ``shared_state`` section: a fixed server from
    ``url``, or the master that ``sentinels`` name (followed on failover)."""
    import redis
    from redis.sentinel import Sentinel

    timeouts = {"socket_timeout": spec.timeout_s, "socket_connect_timeout": spec.timeout_s}
    # The configuration keeps the URL's user:password apart (see
    # SharedStateSpec); redis-py takes them as arguments the URL lacks.
    auth = {"username": spec.username, "password": spec.password}
    if spec.cluster:
        # Keys of one window span hash slots: the cluster pipeline splits
        # each batch per node (still one round trip per node).
        from redis.cluster import RedisCluster

        cluster: redis.Redis = RedisCluster.from_url(  # type: ignore[assignment]
            spec.url, **auth, **timeouts
        )
        return cluster
    if not spec.sentinels:
        return redis.Redis.from_url(spec.url, **auth, **timeouts)
    hosts = []
    for entry in spec.sentinels:
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"shared_state.sentinels: expected host:port, got {entry!r}")
        hosts.append((host, int(port)))
    # redis-py's Sentinel API is untyped.
    options = redis.connection.parse_url(spec.url)  # type: ignore[no-untyped-call]
    # (Typed from redis-py 8 on, and not as its keywords are used here: held as Any.)
    make_sentinel: Any = Sentinel
    sentinel = make_sentinel(hosts, sentinel_kwargs=timeouts, **timeouts)
    master: redis.Redis = sentinel.master_for(
        spec.sentinel_master,
        db=options.get("db", 0),
        username=spec.username or options.get("username"),
        password=spec.password or options.get("password"),
        **timeouts,
    )
    return master
