"""Calls of the tested function across a process boundary (stdlib only; no llamasc import).

The harness process runs the tests; the tested function lives in the worker process, which
also runs the untrusted code. Each ``candidate(*args)`` in the tests becomes one request line
to the worker and one answer line back. Answers are plain data in a tagged JSON form decoded
strictly into fresh builtin objects, so whatever the worker sends is at most a wrong return
value: never an object with a rigged ``__eq__``, never a verdict.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import Any, BinaryIO

MAX_LINE = 64 << 20
MAX_DEPTH = 64
_BIG = 1 << 62


class Unencodable(TypeError):
    """A value that is not plain data (the tested function must return plain data)."""


def encode(value: Any, depth: int = 0) -> Any:
    """Plain data -> JSON-ready data; exact builtin types only (no subclasses)."""
    if depth > MAX_DEPTH:
        raise Unencodable("nested too deeply")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return value if -_BIG < value < _BIG else {"x": hex(value)}
    if kind is float:
        return value if math.isfinite(value) else {"r": repr(value)}
    if kind is list:
        return {"l": [encode(v, depth + 1) for v in value]}
    if kind is tuple:
        return {"t": [encode(v, depth + 1) for v in value]}
    if kind is dict:
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if kind is set or kind is frozenset:
        return {"s" if kind is set else "f": [encode(v, depth + 1) for v in value]}
    if kind is bytes:
        return {"b": value.hex()}
    if kind is complex:
        return {"c": [encode(value.real), encode(value.imag)]}
    raise Unencodable(f"a {kind.__name__} is not plain data")


def decode(data: Any, depth: int = 0) -> Any:
    """The inverse of ``encode``; anything else raises ValueError."""
    if depth > MAX_DEPTH:
        raise ValueError("nested too deeply")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is not dict or len(data) != 1:
        raise ValueError("not an encoded value")
    ((tag, body),) = data.items()
    if tag == "x" and type(body) is str:
        return int(body, 16)
    if tag == "r" and body in ("inf", "-inf", "nan"):
        return float(body)
    if tag == "b" and type(body) is str:
        return bytes.fromhex(body)
    if type(body) is not list:
        raise ValueError("not an encoded value")
    items = [decode(v, depth + 1) for v in body] if tag != "d" else []
    if tag == "l":
        return items
    if tag == "t":
        return tuple(items)
    if tag == "s":
        return set(items)
    if tag == "f":
        return frozenset(items)
    if tag == "c" and len(items) == 2:
        return complex(*items)
    if tag == "d":
        out = {}
        for pair in body:
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("not an encoded value")
            out[decode(pair[0], depth + 1)] = decode(pair[1], depth + 1)
        return out
    raise ValueError("not an encoded value")


def send(fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def receive(stream: BinaryIO) -> dict[str, Any] | None:
    """One message, or None at end of stream. ValueError for anything malformed."""
    line = stream.readline(MAX_LINE)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise ValueError("an answer too long or cut short")
    try:
        message = json.loads(line)
    except (RecursionError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None
    if type(message) is not dict:
        raise ValueError("not a message")
    return message


def _failure(exc: BaseException) -> dict[str, Any]:
    return {"raise": [type(exc).__name__, str(exc)[:500]]}


def serve(function: Callable[..., Any], requests: BinaryIO, answers: int) -> None:
    """The worker's loop: call ``function`` for each request until the harness hangs up."""
    while True:
        message = receive(requests)
        if message is None:
            return
        try:
            args = decode(message["args"])
            kwargs = decode(message["kwargs"])
            reply = {"ok": encode(function(*args, **kwargs))}
        except BaseException as exc:  # sys.exit() in the function fails too
            reply = _failure(exc)
        send(answers, reply)


class WorkerGone(Exception):
    """The worker ended (or broke the protocol) before answering."""


def _builtin_exception(name: str) -> type[BaseException]:
    import builtins

    found = getattr(builtins, name, None)
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    return RuntimeError


class Proxy:
    """Stands for the tested function inside the harness."""

    def __init__(self, name: str, requests: int, answers: BinaryIO) -> None:
        self.__name__ = name
        self._requests = requests
        self._answers = answers
        self.calls = 0

    def _answer(self) -> dict[str, Any]:
        try:
            message = receive(self._answers)
        except ValueError as exc:
            raise WorkerGone(f"the program sent an unreadable answer ({exc})") from None
        if message is None:
            raise WorkerGone("the program exited before the tests finished")
        return message

    def ready(self) -> None:
        """Wait for the worker's first message: the program ran and defined the function."""
        message = self._answer()
        if "raise" in message:
            self._raise(message)
        if message.get("ready") is not True:
            raise WorkerGone("the program broke the call protocol")

    def _raise(self, message: dict[str, Any]) -> None:
        name, text = message["raise"] if isinstance(message["raise"], list) else ("?", "?")
        raise _builtin_exception(str(name))(f"{name}: {text}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        try:
            send(self._requests, {"args": encode(list(args)), "kwargs": encode(kwargs)})
        except BrokenPipeError:
            raise WorkerGone("the program exited before the tests finished") from None
        message = self._answer()
        if "ok" in message:
            try:
                return decode(message["ok"])
            except (ValueError, TypeError, RecursionError) as exc:
                raise WorkerGone(f"the program sent an unreadable answer ({exc})") from None
        if "raise" in message:
            self._raise(message)
        raise WorkerGone("the program broke the call protocol")
