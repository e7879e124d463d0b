"""No secret leaves the configuration.

Distinctive secrets are planted in a configuration (a replica URL's
password, a replica's api_key, a gateway key, a webhook URL's password and
token and a header of it, a Redis password), a real gateway runs in front
of replicas that fail in every way the fault proxy offers, with DEBUG
logging, the access log, the outcome log, alerts, learned state and shared
state on; then every surface is searched for the secrets: answers (bodies,
SSE events, headers), log records, /metrics, /dashboard/data, every file
written, ConfigError texts, reprs of the configuration and the CLI's
output. The replicas and the webhook check their credentials, so the same
run shows the credentials still reach where they belong.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from zeta_fast import Router
from zeta_fast.backends.client import BackendClient, new_session
from zeta_fast.backends.errors import BackendError
from zeta_fast.cli import main as cli_main
from zeta_fast.config import (
    ReplicaSpec,
    RouterConfig,
    SharedStateSpec,
    WebhookSpec,
    load_router_config,
    parse_router_config,
)
from zeta_fast.exceptions import ConfigError
from zeta_fast.gateway import hash_key, start
from zeta_fast.local.canned import canned_app
from zeta_fast.local.fault_proxy import FaultProxy
from zeta_fast.redact import redact_text, redact_url, split_userinfo

REPLICA_USER = "alice"
REPLICA_PASSWORD = "S3cretReplicaPw-7f3a9"
REPLICA_API_KEY = "sk-replica-key-91c2e0"
GATEWAY_KEY = "zk-gateway-key-5d8e44"
HOOK_PASSWORD = "HookPw-0b7d22"
HOOK_TOKEN = "hooktoken-c41f07"
HOOK_HEADER = "hookheader-6a1f93"
REDIS_PASSWORD = "RedisPw-33e9b1"
BASIC = base64.b64encode(f"{REPLICA_USER}:{REPLICA_PASSWORD}".encode()).decode()

SECRETS = {
    "replica password": REPLICA_PASSWORD,
    "replica basic credentials": BASIC,
    "replica api_key": REPLICA_API_KEY,
    "gateway key": GATEWAY_KEY,
    "webhook password": HOOK_PASSWORD,
    "webhook token": HOOK_TOKEN,
    "webhook header": HOOK_HEADER,
    "redis password": REDIS_PASSWORD,
}

MESSAGES = [{"role": "user", "content": "Say hello to the team."}]


class Surfaces:
    """Every text a secret must not appear in, by where it was seen."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("latin-1")
        self.texts.append((where, text))

    def leaks(self) -> list[str]:
        found = []
        for name, secret in SECRETS.items():
            for where, text in self.texts:
                at = text.find(secret)
                if at >= 0:
                    found.append(f"{name} in {where}: ...{text[max(at - 120, 0) : at + 40]!r}")
        return found


class _Capture(logging.Handler):
    """Every record at every level, formatted, with its traceback and its
    raw fields (args, extras), as a structured log handler would see them."""

    def __init__(self, surfaces: Surfaces) -> None:
        super().__init__(logging.DEBUG)
        self.surfaces = surfaces
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.surfaces.add(f"log {record.name}", self.format(record))
            self.surfaces.add(f"log record {record.name}", repr(record.__dict__))


@pytest.fixture
def captured_logs() -> Iterator[Surfaces]:
    surfaces = Surfaces()
    handler = _Capture(surfaces)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield surfaces
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


class Backends:
    """On their own loop thread: a canned replica that wants HTTP Basic
    credentials (on every path, health included), one that wants a Bearer
    key, and a webhook receiver that wants Basic credentials and a token."""

    def __init__(self) -> None:
        self.seen: dict[str, list[str]] = {"basic": [], "bearer": [], "hook": []}
        self.refused: list[str] = []
        self.alerts: list[dict[str, Any]] = []
        self.ports: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._runners: list[web.AppRunner] = []
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10)

    def _guarded(self, name: str, authorization: str, app: web.Application) -> web.Application:
        @web.middleware
        async def check(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.headers.get("Authorization") != authorization:
                self.refused.append(f"{name} {request.path}")
                return web.json_response({"error": {"message": "no"}}, status=401)
            self.seen[name].append(request.path)
            response: web.StreamResponse = await handler(request)
            return response

        app.middlewares.append(check)
        return app

    def _hook(self) -> web.Application:
        async def receive(request: web.Request) -> web.Response:
            if request.query.get("token") != HOOK_TOKEN:
                self.refused.append("hook token")
                return web.Response(status=403)
            if request.headers.get("X-Hook-Key") != HOOK_HEADER:
                self.refused.append("hook header")
                return web.Response(status=403)
            self.alerts.append(await request.json())
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", receive)
        basic = base64.b64encode(f"hook:{HOOK_PASSWORD}".encode()).decode()
        return self._guarded("hook", f"Basic {basic}", app)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        apps = {
            "basic": self._guarded("basic", f"Basic {BASIC}", canned_app("m", chunks=32)),
            "bearer": self._guarded(
                "bearer", f"Bearer {REPLICA_API_KEY}", canned_app("m", chunks=32)
            ),
            "hook": self._hook(),
        }

        async def serve() -> None:
            for name, app in apps.items():
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                self.ports[name] = runner.addresses[0][1]
                self._runners.append(runner)

        self._loop.run_until_complete(serve())
        ready.set()
        self._loop.run_forever()
        for runner in self._runners:
            self._loop.run_until_complete(runner.cleanup())

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def redis_with_password(folder: Path) -> Iterator[int | None]:
    """A redis-server that wants ``REDIS_PASSWORD`` (None: not installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = _free_port()
    process = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", str(folder), "--requirepass", REDIS_PASSWORD),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def secret_config(tmp: Path, ports: dict[str, int], redis_port: int | None) -> dict[str, Any]:
    hook = f"http://hook:{HOOK_PASSWORD}@127.0.0.1:{ports['hook']}/hook?token={HOOK_TOKEN}"
    config: dict[str, Any] = {
        "models": [
            {
                "id": "m",
                "capabilities": {"chat": 80, "code": 80, "reasoning": 80, "knowledge": 80},
                "replicas": [
                    {
                        "id": "basic",
                        "url": f"http://{REPLICA_USER}:{REPLICA_PASSWORD}@127.0.0.1:{ports['pa']}",
                        "backend": "vllm",
                    },
                    {
                        "id": "bearer",
                        "url": f"http://127.0.0.1:{ports['pb']}",
                        "backend": "vllm",
                        "api_key": REPLICA_API_KEY,
                    },
                ],
            }
        ],
        "state_path": str(tmp / "state" / "tracker.snapshot"),
        "outcome_log": {"path": str(tmp / "state" / "outcomes.sqlite")},
        "learning": {"enabled": True, "learn_from_outcomes": True, "save_interval_s": 0.2},
        # A judge with its own credentials grades every answer: its calls,
        # failures and verdicts are surfaces too.
        "signals": {
            "judge": {
                "enabled": True,
                "url": f"http://127.0.0.1:{ports['bearer']}",
                "api_key": REPLICA_API_KEY,
                "sample": 1.0,
                "timeout_s": 2,
            }
        },
        "dispatch": {
            "max_attempts": 2,
            "backoff_base_ms": 1,
            "backoff_max_ms": 5,
            "timeouts": {"connect_s": 0.3, "first_byte_s": 0.3, "total_s": 0.6},
            "breaker": {"failure_threshold": 1000},
            "health": {
                "enabled": True,
                "interval_s": 0.1,
                "timeout_s": 0.3,
                "unhealthy_after": 1000,
                "scrape_interval_s": 0.1,
            },
        },
        "gateway": {
            "access_log": True,
            "decision_record": True,
            "api_keys": [{"name": "team", "sha256": hash_key(GATEWAY_KEY)}],
        },
        "alerts": {
            "rules": [
                {
                    "name": "low-success",
                    "threshold": {"metric": "success_rate", "below": 0.99, "min_requests": 1},
                }
            ],
            "webhook": {
                "url": hook,
                "retries": 0,
                "timeout_s": 2,
                "headers": {"X-Hook-Key": HOOK_HEADER},
            },
        },
    }
    if redis_port is not None:
        config["shared_state"] = {
            "enabled": True,
            "url": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/0",
            "interval_s": 0.05,
        }
    return config


# The faults a replica shows; the streams' cut comes after events reached the
# client (an SSE error event), the other cut before the answer's head ends.
FAULTS: list[dict[str, Any]] = [
    {"reset": True},
    {"empty": True},
    {"status": 503, "message": "overloaded"},
    {"status": 500},
    {"status": 400, "message": "bad request"},
    {"status": 429},
    {"cut_after_bytes": 20},
    {"cut_after_bytes": 1500},
    {"blackhole": True},
    {"delay_ms": 800},
]


def test_no_secret_reaches_any_surface(
    tmp_path: Path, captured_logs: Surfaces, capsys: pytest.CaptureFixture[str]
) -> None:
    surfaces = captured_logs
    backends = Backends()
    proxies = {
        "pa": FaultProxy("127.0.0.1", backends.ports["basic"]).start(),
        "pb": FaultProxy("127.0.0.1", backends.ports["bearer"]).start(),
    }
    ports = {**backends.ports, **{name: p.port for name, p in proxies.items()}}
    try:
        with redis_with_password(tmp_path) as redis_port:
            data = secret_config(tmp_path, ports, redis_port)
            config = parse_router_config(data)
            router = Router(config)
            try:
                asyncio.run(_exercise(router, proxies, surfaces))
                assert router.alerts is not None
                router.alerts.process()
                shared = router.shared
                if redis_port is not None:
                    assert shared is not None
                    deadline = time.monotonic() + 5
                    while shared.stats.cycles < 3 and time.monotonic() < deadline:
                        time.sleep(0.05)
                    shared_ok = (shared.stats.cycles, shared.stats.last_error)
            finally:
                # Writes the tracker's final snapshot too: the router made it.
                router.close()
    finally:
        for proxy in proxies.values():
            proxy.stop()
        backends.stop()

    surfaces.add("webhook payloads", json.dumps(backends.alerts))
    # The CLI's views of the run: the alert history and the report (files).
    db = str(tmp_path / "state" / "outcomes.sqlite")
    assert cli_main(["alerts", "--db", db, "--json"]) == 0
    config_file = tmp_path.parent / f"{tmp_path.name}-config.json"  # it holds the secrets
    config_file.write_text(json.dumps(data))
    report = ["report", "--db", db, "--config", str(config_file), "--json"]
    assert cli_main([*report, "--out", str(tmp_path / "report")]) == 0
    config_file.unlink()
    surfaces.add("zeta-fast alerts, report", str(capsys.readouterr()))

    # Every file the router wrote: snapshot, learned state, outcome log,
    # alerts, and the report.
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".html" for p in written)
    assert any(p.name == "outcomes.sqlite" for p in written)
    assert any(p.name == "tracker.snapshot" for p in written)
    for path in written:
        surfaces.add(f"file {path.relative_to(tmp_path)}", path.read_bytes())

    # The configuration itself, as code might print it.
    for where, obj in _config_objects(config):
        surfaces.add(f"repr({where})", repr(obj))
        surfaces.add(f"str({where})", str(obj))
    _config_errors(surfaces, tmp_path, capsys)

    assert any("attempt at m/basic failed" in text for _, text in surfaces.texts)
    assert surfaces.leaks() == []

    # ... and the credentials still got where they belong.
    assert backends.refused == []
    assert "/v1/chat/completions" in backends.seen["basic"]
    assert "/v1/chat/completions" in backends.seen["bearer"]
    assert "/health" in backends.seen["basic"], "health checks send the replica's credentials"
    assert "/health" in backends.seen["bearer"]
    assert backends.alerts, "the webhook got the alert, with its credentials"
    assert backends.alerts[0]["rule"] == "low-success"
    if redis_port is not None:
        cycles, last_error = shared_ok
        assert cycles >= 3, shared_ok
        assert last_error is None, shared_ok


async def _exercise(router: Router, proxies: dict[str, FaultProxy], surfaces: Surfaces) -> None:
    running = await start(router, port=0)
    router.start_health()
    key = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    cut_streams: list[str] = []  # streams ended by an error event
    try:
        async with aiohttp.ClientSession(headers=key) as session:

            async def ask(stream: bool, tag: str) -> int:
                payload = {"model": "m", "messages": MESSAGES, "max_tokens": 8, "stream": stream}
                async with session.post(
                    running.url + "/v1/chat/completions", json=payload
                ) as response:
                    surfaces.add(f"{tag} headers", repr(dict(response.headers)))
                    body = await response.read()
                    surfaces.add(f"{tag} body", body)
                    if stream and b'data: {"error"' in body:
                        cut_streams.append(tag)
                    return response.status

            async def wave(tag: str, n: int = 3) -> list[int]:
                return list(
                    await asyncio.gather(
                        *(ask(stream, f"{tag} stream={stream}") for stream in (False, True)),
                        *(ask(i % 2 == 0, f"{tag} #{i}") for i in range(n)),
                    )
                )

            # Healthy replicas answer: both authenticate.
            for _ in range(4):
                assert set(await wave("healthy")) == {200}
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                if router.health is not None and router.health.checks >= 4:
                    break
            for fault in FAULTS:
                for proxy in proxies.values():
                    proxy.set_fault(**fault)
                await wave(f"fault {fault}")
                # Health checks and load scrapes meet the fault too.
                await asyncio.sleep(0.35)
                for proxy in proxies.values():
                    proxy.clear()
            assert cut_streams, "no stream was cut after events reached the client"
            await wave("after faults")

            for path in ("/metrics", "/dashboard/data", "/health", "/v1/models", "/dashboard"):
                async with session.get(running.url + path) as response:
                    assert response.status in (200, 503), (path, response.status)
                    surfaces.add(f"GET {path}", await response.read())
                    surfaces.add(f"GET {path} headers", repr(dict(response.headers)))
            async with aiohttp.ClientSession() as anonymous:
                for auth in (None, f"Bearer {GATEWAY_KEY}x", f"Basic {BASIC}"):
                    headers = {"Authorization": auth} if auth else {}
                    async with anonymous.get(
                        running.url + "/dashboard/data", headers=headers
                    ) as response:
                        assert response.status == 401
                        surfaces.add("refused", await response.read())
        # The judge's gradings (off the request path) have ended, each asked.
        judge = running.gateway.judge
        assert judge is not None
        await judge.in_flight.close(timeout_s=5.0)
        assert running.gateway.counters.signals["judge", "asked"] > 0
        surfaces.add("signal events", repr(running.gateway.counters.signals))
    finally:
        await running.stop()
        await router.aclose()
    # The backend client itself, as code that catches its errors sees them.
    session = new_session()
    try:
        for spec in router.config.models[0].replicas:
            client = BackendClient(
                session, str(spec.url), flavor=spec.backend, authorization=spec.authorization()
            )
            surfaces.add("client base_url", client.base_url)
            with contextlib.suppress(BackendError):
                await client.models(timeout_s=1.0)
    finally:
        await session.close()


def _config_objects(config: RouterConfig) -> Iterator[tuple[str, object]]:
    yield "config", config
    yield "config.gateway", config.gateway
    yield "config.alerts", config.alerts
    yield "config.alerts.webhook", config.alerts.webhook
    yield "config.shared_state", config.shared_state
    yield "config.signals.judge", config.signals.judge
    for model in config.models:
        yield f"model {model.id}", model
        for replica in model.replicas:
            yield f"replica {replica.id}", replica
            yield f"replica {replica.id}.url", replica.url


def _config_errors(surfaces: Surfaces, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ConfigError texts (and the CLI's) for configurations with secrets in
    the bad values: a URL that fails validation, a raw key where its
    sha256 belongs, a webhook URL with a bad scheme."""
    bad: list[dict[str, Any]] = [
        {"url": f"ftp://{REPLICA_USER}:{REPLICA_PASSWORD}@127.0.0.1:1", "api_key": 5},
        {"url": f"http://{REPLICA_USER}:{REPLICA_PASSWORD}@", "max_concurrency": -1},
        {"url": f"http://{REPLICA_USER}:{REPLICA_PASSWORD}@h:1", "api_key": REPLICA_API_KEY},
        {"url": f"http://{REPLICA_USER}:{REPLICA_PASSWORD}@h:1", "backend": "nope"},
    ]
    for i, replica in enumerate(bad):
        data = {
            "models": [
                {"id": "m", "capabilities": {"chat": 1}, "replicas": [{"id": "r", **replica}]}
            ],
            "gateway": {"api_keys": [{"name": "k", "sha256": GATEWAY_KEY}]},
            "alerts": {
                "webhook": {
                    "url": f"hxxp://hook:{HOOK_PASSWORD}@h/hook?token={HOOK_TOKEN}",
                    "headers": {"X-Hook-Key": HOOK_HEADER, "X-Other": 3},
                }
            },
            "shared_state": {
                "url": f"redis://:{REDIS_PASSWORD}@h:6379/0",
                "sentinels": [f"user:{REDIS_PASSWORD}@h:26379"],
                "timeout_s": -1,
            },
        }
        with pytest.raises(ConfigError) as caught:
            parse_router_config(data)
        surfaces.add(f"ConfigError #{i}", str(caught.value))
        surfaces.add(f"ConfigError #{i} repr", repr(caught.value))
        # Nothing chained either: pydantic's error holds the raw input.
        assert caught.value.__cause__ is None
        assert caught.value.__context__ is None
        with pytest.raises(ValidationError) as direct:
            RouterConfig.model_validate(data)
        surfaces.add(f"ValidationError #{i}", str(direct.value))
        # The CLI reads a file with it.
        path = tmp / f"bad{i}.json"
        path.write_text(json.dumps(data))
        assert cli_main(["serve", "--config", str(path)]) != 0
        out = capsys.readouterr()
        surfaces.add(f"zeta-fast serve #{i} stdout", out.out)
        surfaces.add(f"zeta-fast serve #{i} stderr", out.err)
    # A file that does not parse: PyYAML's own message quotes the bad line.
    broken = tmp / "broken.yaml"
    broken.write_text(f'models:\n  - replicas:\n      - api_key: "{REPLICA_API_KEY}\n  x: [\n')
    with pytest.raises(ConfigError) as caught:
        load_router_config(broken)
    assert "line 3" in str(caught.value)
    assert caught.value.__context__ is None
    surfaces.add("YAML ConfigError", str(caught.value))
    assert cli_main(["serve", "--config", str(broken)]) != 0
    surfaces.add("zeta-fast serve broken.yaml", str(capsys.readouterr()))
    for model, kwargs in (
        (ReplicaSpec, {"id": "r", "url": f"ftp://a:{REPLICA_PASSWORD}@h", "api_key": 1}),
        (WebhookSpec, {"url": f"ftp://a:{HOOK_PASSWORD}@h/?token={HOOK_TOKEN}"}),
        (SharedStateSpec, {"url": f"redis://:{REDIS_PASSWORD}@h", "timeout_s": -1}),
    ):
        with pytest.raises(ValidationError) as direct:
            model.model_validate(kwargs)
        surfaces.add(f"{model.__name__} ValidationError", str(direct.value))


# -- the rule itself ----------------------------------------------------------


def test_redaction_rule() -> None:
    assert split_userinfo("http://alice:S3cret@host:1/x") == ("http://host:1/x", "alice", "S3cret")
    assert split_userinfo("http://a%40b:p%3Aw@host/") == ("http://host/", "a@b", "p:w")
    assert split_userinfo("http://token@host") == ("http://host", "token", None)
    assert split_userinfo("http://host:1/x") == ("http://host:1/x", None, None)
    assert redact_url("http://alice:S3cret@host:1/x") == "http://***@host:1/x"
    assert redact_url("https://h/hook?token=abc&x=1&API_KEY=k&sig=s") == (
        "https://h/hook?token=***&x=1&API_KEY=***&sig=***"
    )
    assert redact_url("http://host:1/x") == "http://host:1/x"
    text = "stream from http://alice:S3cret@h:1 failed; see 'https://h/?key=abc' (S3cret)"
    assert redact_text(text) == (
        "stream from http://***@h:1 failed; see 'https://h/?key=***' (S3cret)"
    )
    assert redact_text(text, ["S3cret", ""]) == (
        "stream from http://***@h:1 failed; see 'https://h/?key=***' (***)"
    )


def replica(**fields: Any) -> ReplicaSpec:
    return ReplicaSpec.model_validate({"id": "r", **fields})


def test_replica_credentials_are_kept_apart() -> None:
    spec = replica(url=f"http://alice:{REPLICA_PASSWORD}@127.0.0.1:9/api")
    assert str(spec.url) == "http://127.0.0.1:9/api"
    assert (spec.username, spec.password) == ("alice", REPLICA_PASSWORD)
    assert spec.authorization() == f"Basic {BASIC}"
    assert REPLICA_PASSWORD not in repr(spec)
    # Given apart, the same; a dump and a reload keep them.
    same = replica(url="http://127.0.0.1:9/api", username="alice", password=REPLICA_PASSWORD)
    assert same == spec
    assert ReplicaSpec.model_validate(spec.model_dump()) == spec
    assert ReplicaSpec.model_validate(spec.model_dump(mode="json")) == spec
    assert replica(url="http://h", api_key="k").authorization() == "Bearer k"
    assert replica(url="http://h").authorization() is None
    with pytest.raises(ValidationError, match="api_key"):
        replica(url="http://a:b@h", api_key="k")
    with pytest.raises(ValidationError, match="both"):
        replica(url="http://a:b@h", password="c")
    hook = WebhookSpec.model_validate(
        {"url": f"http://hook:{HOOK_PASSWORD}@h/x?token={HOOK_TOKEN}"}
    )
    assert str(hook.url) == f"http://h/x?token={HOOK_TOKEN}"  # sent as is: the receiver wants it
    assert repr(hook).startswith("WebhookSpec(url='http://h/***', ")
    assert hook.request_headers()["Authorization"].startswith("Basic ")
    with pytest.raises(ValidationError, match="Authorization"):
        WebhookSpec.model_validate({"url": "http://a:b@h", "headers": {"authorization": "x"}})
    redis_spec = SharedStateSpec(url=f"redis://:{REDIS_PASSWORD}@h:6379/0")
    assert (redis_spec.url, redis_spec.username, redis_spec.password) == (
        "redis://h:6379/0",
        None,
        REDIS_PASSWORD,
    )
    assert REDIS_PASSWORD not in repr(redis_spec)
    assert "password=***" in repr(SharedStateSpec(url=f"redis://h/0?password={REDIS_PASSWORD}"))
    with pytest.raises(ValidationError, match="host:port"):
        SharedStateSpec(sentinels=[f"u:{REDIS_PASSWORD}@h:26379"])


def test_backend_client_keeps_credentials_out_of_its_url() -> None:
    async def main() -> None:
        session = new_session()
        try:
            client = BackendClient(session, f"http://alice:{REPLICA_PASSWORD}@127.0.0.1:1/")
            assert client.base_url == "http://127.0.0.1:1"
            with pytest.raises(BackendError) as caught:
                await client.post("/v1/chat/completions", b"{}")
            assert REPLICA_PASSWORD not in str(caught.value)
            assert REPLICA_PASSWORD not in caught.value.url
        finally:
            await session.close()

    asyncio.run(main())
