"""Waiting on a state instead of on the clock: tests poll the condition they
need until it holds. The deadline only turns a hang into a failure; it is
never what makes a test pass, so a slow machine makes a test slower, not red.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

__all__ = ["wait_until", "wait_until_async"]


def wait_until(
    condition: Callable[[], object], timeout_s: float = 10.0, *, interval_s: float = 0.01
) -> None:
    """Polls ``condition`` until it is true; AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{_named(condition)} still false after {timeout_s} s")
        time.sleep(interval_s)


async def wait_until_async(
    condition: Callable[[], object | Awaitable[object]],
    timeout_s: float = 10.0,
    *,
    interval_s: float = 0.01,
) -> None:
    """``wait_until`` inside an event loop, which keeps running between polls
    (``condition`` may be a coroutine function)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"{_named(condition)} still false after {timeout_s} s")
        await asyncio.sleep(interval_s)


def _named(condition: Callable[..., object]) -> str:
    name = getattr(condition, "__qualname__", repr(condition))
    return "a condition" if name.endswith("<lambda>") else name
