"""Structural checks of an answer: what can be told wrong with it at no cost.

A router only sees that an answer arrived, which says nothing of its
quality. Some failures show in the answer's shape, though, and every answer
can be checked for them:

- JSON mode (``response_format`` ``json_object``) was asked and the content
  does not parse as a JSON object (``json``); a ``json_schema`` was asked
  and the content does not parse or does not match it (``json_schema``).
  An answer cut by the client's own token limit is the request's doing: it
  fails only when it did not even begin as JSON;
- tools were offered and a tool call is malformed: a name no tool has, or
  arguments that do not parse or do not match the tool's parameters
  (``tools``); a text answer is a deliberate choice unless the client
  required a tool;
- the answer is empty (``empty``);
- the answer ends in degenerate repetition, a loop of the same words
  (``repetition``);
- the answer was cut at the token limit although the client set none
  (``length``): the model ran on until the server's own cap.

The check's name goes to the core (``RouterCore.check_answer``), which keeps
each model's recent checks per request kind (plain, JSON mode, tools) and
scales the model's capability for that kind by its pass share, and learns
the text failures (empty, repetition, length) as bad verdicts.
"""

from __future__ import annotations

import re
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

__all__ = ["CHECKS", "check_chat_answer", "is_degenerate", "streamed_answer"]

#: Every check's name, ``ok`` first (the core's order).
CHECKS = ("ok", "json", "json_schema", "tools", "empty", "repetition", "length")

#: The client's own token limit, as the APIs spell it.
_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "n_predict")

#: Text shorter than this is never called degenerate: a short answer that
#: repeats a word ("no no no") is a style, not a loop.
_MIN_DEGENERATE_CHARS = 400
#: What the tail of a looping answer compresses to at most. Natural text
#: compresses to about half, code to about a third; a loop of a phrase to a
#: few per cent. Random text over two symbols still takes about 0.15.
_DEGENERATE_RATIO = 0.1
_TAIL_CHARS = 2048

#: The JSON object of each ``data:`` line of an event stream.
_DATA_OBJECT = re.compile(rb"^data: ?(\{[^\r\n]*)", re.MULTILINE)

#: Compiled validators of the schemas clients sent, by their JSON (clients
#: send the same few schemas again and again).
_VALIDATORS: OrderedDict[bytes, Draft202012Validator | None] = OrderedDict()
_MAX_VALIDATORS = 256


def is_degenerate(text: str) -> bool:
    """Whether ``text`` ends in a loop: its last 2 KB compress to under a
    tenth (zlib, C speed: ~20 us)."""
    if len(text) < _MIN_DEGENERATE_CHARS:
        return False
    tail = text[-_TAIL_CHARS:].encode("utf-8", "surrogatepass")
    return len(zlib.compress(tail, 6)) < _DEGENERATE_RATIO * len(tail)


def _validator(schema: object) -> Draft202012Validator | None:
    """The validator of a client's schema; None for a schema that is not
    one (the client's error: nothing to hold against the model)."""
    if not isinstance(schema, Mapping):
        return None
    try:
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return None
    if key in _VALIDATORS:
        _VALIDATORS.move_to_end(key)
        return _VALIDATORS[key]
    try:
        Draft202012Validator.check_schema(schema)
        validator: Draft202012Validator | None = Draft202012Validator(schema)
    except SchemaError:
        validator = None
    _VALIDATORS[key] = validator
    if len(_VALIDATORS) > _MAX_VALIDATORS:
        _VALIDATORS.popitem(last=False)
    return validator


def _matches(value: object, schema: object) -> bool:
    validator = _validator(schema)
    if validator is None:
        return True
    try:
        return bool(validator.is_valid(value))
    except Exception:  # a schema the library cannot apply is not the model's fault
        return True


def _json_check(content: str, response_format: Mapping[str, Any]) -> str | None:
    kind = response_format.get("type")
    if kind not in ("json_object", "json_schema"):
        return None
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return "json" if kind == "json_object" else "json_schema"
    if kind == "json_object":
        return None if isinstance(value, dict) else "json"
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    return None if schema is None or _matches(value, schema) else "json_schema"


def _tools_by_name(tools: object) -> dict[str, object]:
    named: dict[str, object] = {}
    if isinstance(tools, list):
        for tool in tools:
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if isinstance(function, Mapping) and isinstance(function.get("name"), str):
                named[function["name"]] = function.get("parameters")
    return named


def _tool_check(message: Mapping[str, Any], payload: Mapping[str, Any]) -> str | None:
    tools = _tools_by_name(payload.get("tools"))
    calls = message.get("tool_calls")
    if not calls:
        choice = payload.get("tool_choice")
        required = choice == "required" or isinstance(choice, Mapping)
        return "tools" if required else None
    if not isinstance(calls, list):
        return "tools"
    for call in calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            return "tools"
        name = function.get("name")
        if not isinstance(name, str) or (tools and name not in tools):
            return "tools"
        arguments = function.get("arguments")
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            return "tools"
        if not isinstance(parsed, dict):
            return "tools"
        parameters = tools.get(name)
        if parameters is not None and not _matches(parsed, parameters):
            return "tools"
    return None


def check_chat_answer(payload: Mapping[str, Any], answer: object) -> str:
    """The structural check of a chat completion ``answer`` (the parsed
    body) to the request ``payload``: ``ok`` or the failure's name (see the
    module's notes). Only the first choice is checked."""
    choices = answer.get("choices") if isinstance(answer, Mapping) else None
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, Mapping) else None
    if not isinstance(choice, Mapping) or not isinstance(message, Mapping):
        return "empty"
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    has_calls = bool(message.get("tool_calls"))
    if payload.get("tools"):
        failed = _tool_check(message, payload)
        if failed is not None:
            return failed
    if not has_calls and not text.strip():
        return "empty"
    limited = any(payload.get(limit) is not None for limit in _LIMITS)
    cut = choice.get("finish_reason") == "length"
    if cut and not limited:
        # Whatever else is wrong with it follows from running on to the cap.
        return "length"
    response_format = payload.get("response_format")
    if isinstance(response_format, Mapping) and not has_calls:
        # JSON cut short by the client's own limit is the request's doing:
        # held against the model only when it did not even begin as JSON.
        if cut and limited:
            began = text.lstrip()[:1] in ("{", "[")
            if not began and response_format.get("type") in ("json_object", "json_schema"):
                return "json" if response_format.get("type") == "json_object" else "json_schema"
        else:
            failed = _json_check(text, response_format)
            if failed is not None:
                return failed
    if is_degenerate(text):
        return "repetition"
    return "ok"


def streamed_answer(stream: bytes) -> dict[str, Any] | None:
    """The chat completion a streamed answer (its SSE bytes) adds up to:
    the first choice's content, tool calls (arguments joined per index) and
    finish reason, in a non-streamed answer's shape; None when no event
    parses (not a chat completion stream)."""
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish: object = None
    seen = False
    payloads = _DATA_OBJECT.findall(stream)
    try:
        # One parse for every event (a C call, not one per event).
        events: list[Any] = orjson.loads(b"[" + b",".join(payloads) + b"]")
    except orjson.JSONDecodeError:
        events = []
        for data in payloads:
            try:
                events.append(orjson.loads(data))
            except orjson.JSONDecodeError:
                continue
    for event in events:
        choices = event.get("choices") if isinstance(event, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            continue
        seen = True
        choice = choices[0]
        finish = choice.get("finish_reason") or finish
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        if isinstance(delta.get("content"), str):
            content.append(delta["content"])
        for part in delta.get("tool_calls") or ():
            if not isinstance(part, dict):
                continue
            call = calls.setdefault(
                part.get("index", 0) if isinstance(part.get("index"), int) else 0,
                {"type": "function", "function": {"name": None, "arguments": ""}},
            )
            function = part.get("function")
            if isinstance(function, dict):
                if isinstance(function.get("name"), str):
                    call["function"]["name"] = function["name"]
                if isinstance(function.get("arguments"), str):
                    call["function"]["arguments"] += function["arguments"]
    if not seen:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish}]}
