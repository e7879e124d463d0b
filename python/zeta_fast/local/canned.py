"""A canned OpenAI-compatible server: fixed answers at once, for measuring
what a router in front of it adds (a real engine's own time would drown it).

``/v1/chat/completions`` and ``/v1/completions`` answer a small JSON body,
or, with ``"stream": true``, ``chunks`` SSE events each written and flushed
on its own, then ``data: [DONE]``; ``/v1/models``, ``/health`` and an
empty ``/metrics`` as vLLM has them.

Run it: ``python -m zeta_fast.local.canned --port 9001 --chunks 32``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

__all__ = ["canned_app", "main"]


def _event(model: str, delta: dict[str, str], **extra: Any) -> bytes:
    choice: dict[str, Any] = {"index": 0, "delta": delta}
    if "finish_reason" in extra:
        choice["finish_reason"] = extra.pop("finish_reason")
    chunk = {
        "id": "chatcmpl-canned",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [choice],
        **extra,
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def canned_app(model: str = "canned", chunks: int = 32) -> web.Application:
    """The application; ``chunks`` events per streamed answer."""
    answer = orjson.dumps(
        {
            "id": "chatcmpl-canned",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "canned answer"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10},
        }
    )
    events = [_event(model, {"content": f"tok{i} "}) for i in range(chunks)]
    usage = {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks}
    final = _event(model, {}, finish_reason="stop", usage=usage) + b"data: [DONE]\n\n"
    models = orjson.dumps(
        {"object": "list", "data": [{"id": model, "object": "model", "created": 0}]}
    )

    async def complete(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        if not body.get("stream"):
            return web.Response(body=answer, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        await response.write(final)
        await response.write_eof()
        return response

    async def listing(request: web.Request) -> web.Response:
        return web.Response(body=models, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_post("/v1/completions", complete)
    app.router.add_get("/v1/models", listing)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--model", default="canned")
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    started = time.monotonic()
    web.run_app(
        canned_app(args.model, args.chunks),
        host=args.host,
        port=args.port,
        access_log=None,
        print=lambda _: print(
            f"canned server on {args.host}:{args.port} ({time.monotonic() - started:.2f}s)",
            flush=True,
        ),
    )


if __name__ == "__main__":
    main()
