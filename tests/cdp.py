"""Headless Chromium (the distribution's package) driven over the Chrome
DevTools Protocol with aiohttp's WebSocket client: load a page, read the
rendered DOM, take screenshots. Just what the dashboard tests need."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["Browser", "chromium_binary"]


def chromium_binary() -> str:
    """The Chromium executable; scripts/setup.sh installs Debian's ``chromium``."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no Chromium found: scripts/setup.sh installs Debian's `chromium` package "
        "(apt-get install chromium)"
    )


class Browser:
    """One headless Chromium with one page."""

    def __init__(self, width: int = 1400, height: int = 2000) -> None:
        self.width, self.height = width, height
        self._profile = tempfile.TemporaryDirectory(prefix="zeta-chromium-")
        self._process: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> Browser:
        self._process = subprocess.Popen(
            [
                chromium_binary(),
                "--headless=new",
                "--no-sandbox",  # root in a container
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={self._profile.name}",
                f"--window-size={self.width},{self.height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        port = await asyncio.to_thread(self._devtools_port)
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t["type"] == "page")
        self._socket = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )
        return self

    def _devtools_port(self) -> int:
        assert self._process is not None
        assert self._process.stderr is not None
        for raw in self._process.stderr:
            found = re.search(rb"DevTools listening on ws://[^:]+:(\d+)/", raw)
            if found:
                return int(found.group(1))
        raise RuntimeError(f"Chromium exited ({self._process.wait()}) before DevTools listened")

    async def __aexit__(self, *exc: object) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._session is not None:
            await self._session.close()
        if self._process is not None:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)
            if self._process.poll() is None:
                self._process.kill()
        self._profile.cleanup()

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One protocol command; its result (events meanwhile are dropped)."""
        assert self._socket is not None
        command_id = next(self._ids)
        await self._socket.send_str(
            json.dumps({"id": command_id, "method": method, "params": params or {}})
        )
        while True:
            message = await self._socket.receive(timeout=30)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"DevTools socket closed: {message}")
            data = json.loads(message.data)
            if data.get("id") == command_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return dict(data["result"])

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able)."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page raised: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def values(self) -> dict[str, str]:
        """Every ``data-k`` element's ``data-v`` (or text) on the page."""
        value = await self.evaluate(
            "Object.fromEntries([...document.querySelectorAll('[data-k]')].map("
            "e => [e.dataset.k, e.dataset.v !== undefined ? e.dataset.v : e.textContent]))"
        )
        return dict(value or {})

    async def screenshot(self, path: Path) -> Path:
        result = await self.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path
