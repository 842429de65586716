"""Reading a child's output: the cause line of a failure, the ring, the file, the callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from llamasc.process._output import OutputPump, meaningful_line, strip_log_prefix

# Verbatim from llama-server b11434 on this project's CI image (paths shortened).
CORRUPT_MODEL = """\
0.00.001.558 I srv  llama_server: initializing ...
0.00.004.799 W srv  llama_server: security: no API key is set and CORS allows all origins
0.00.006.719 I srv    load_model: loading model 'x.gguf'
0.00.006.872 E gguf_init_from_reader: invalid magic characters: 'garb', expected 'GGUF'
0.00.006.986 E llama_model_load: error loading model: llama_model_loader: failed to load model
0.00.006.996 E llama_model_load_from_file_impl: failed to load model
0.00.007.056 E srv    load_model: failed to load model, 'x.gguf'
0.00.007.058 I srv    operator(): operator(): cleaning up before exit...
0.00.007.471 E srv  llama_server: exiting due to model loading error"""
MISSING_MODEL = """\
0.00.006.719 I srv    load_model: loading model '/nonexist.gguf'
0.00.006.869 E common_fit_params: encountered an error while trying to fit params: failed
0.00.006.879 E gguf_init_from_file: failed to open GGUF file '/nonexist.gguf' (No such file)
0.00.006.887 E llama_model_load: error loading model: failed to load model from /nonexist.gguf
0.00.007.316 E srv  llama_server: exiting due to model loading error"""
BIND_FAILURE = """\
0.00.001.307 I srv  llama_server: initializing ...
0.00.003.354 W srv  llama_server: security: no API key is set and CORS allows all origins
0.00.003.439 E srv         start: couldn't bind HTTP server socket, hostname: 127.0.0.1, port: 1
0.00.003.443 I srv    operator(): operator(): cleaning up before exit...
0.00.003.535 E srv  llama_server: exiting due to HTTP server error"""
BAD_ARGUMENT = "\nerror: invalid argument: --port=8080\n"
OLD_BUILD = """\
main: loading model
llama_model_load: error loading model: unknown model architecture: 'nope'
main: exiting due to model loading error"""


@pytest.mark.parametrize(
    ("log", "cause"),
    [
        (CORRUPT_MODEL, "gguf_init_from_reader: invalid magic characters: 'garb', expected 'GGUF'"),
        (
            MISSING_MODEL,
            "gguf_init_from_file: failed to open GGUF file '/nonexist.gguf' (No such file)",
        ),
        (
            BIND_FAILURE,
            "srv         start: couldn't bind HTTP server socket, hostname: 127.0.0.1, port: 1",
        ),
        (BAD_ARGUMENT, "error: invalid argument: --port=8080"),
        (OLD_BUILD, "llama_model_load: error loading model: unknown model architecture: 'nope'"),
        ("0.00.000.001 I nothing wrong\n0.00.000.002 I just stopped", "just stopped"),
        ("", ""),
    ],
)
def test_meaningful_line_names_the_cause(log: str, cause: str) -> None:
    assert meaningful_line(log.splitlines()) == cause


def test_strip_log_prefix_leaves_other_lines_alone() -> None:
    assert strip_log_prefix("0.01.002.003 W srv  x: y") == "srv  x: y"
    assert strip_log_prefix("error: invalid argument: -x") == "error: invalid argument: -x"


@pytest.mark.anyio
async def test_pump_feeds_ring_file_log_and_callbacks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    lines = [f"line {i}" for i in range(10)]
    lines.insert(5, "0.00.1 I srv  llama_server: listening on http://127.0.0.1:8501")
    stream = io.BytesIO(("\n".join(lines) + "\r\nno newline at end").encode())
    seen: list[str] = []
    ready: list[str] = []
    eof = asyncio.Event()
    log_path = tmp_path / "side.log"
    with caplog.at_level("DEBUG", logger="llamasc.process"):
        pump = OutputPump(
            stream,
            loop=loop,
            ring_lines=4,
            prefix="[sidecar:t:8501] ",
            log_file=open(log_path, "a", encoding="utf-8"),  # noqa: SIM115 (the pump closes it)
            on_line=seen.append,
            on_ready_line=ready.append,
            on_eof=eof.set,
        )
        pump.start()
        await asyncio.wait_for(eof.wait(), 5)
    expected = [*lines, "no newline at end"]
    assert seen == expected
    assert ready == [lines[5]]
    assert pump.tail(50) == expected[-4:]
    assert pump.tail(2) == expected[-2:]
    assert pump.tail(0) == []
    assert log_path.read_text(encoding="utf-8").splitlines() == expected
    assert "[sidecar:t:8501] line 3" in caplog.text
    assert stream.closed


@pytest.mark.anyio
async def test_pump_survives_undecodable_bytes() -> None:
    loop = asyncio.get_running_loop()
    eof = asyncio.Event()
    pump = OutputPump(
        io.BytesIO(b"ok\n\xff\xfe broken\n"), loop=loop, ring_lines=10, prefix="", on_eof=eof.set
    )
    pump.start()
    await asyncio.wait_for(eof.wait(), 5)
    assert pump.tail(5) == ["ok", "\ufffd\ufffd broken"]


@contextlib.asynccontextmanager
async def _paced_pump(pace: float) -> AsyncIterator[tuple[OutputPump, int]]:
    """A started pump pacing ``pace`` s over a pipe; yields it and the pipe's write end.
    On the way out the pump is hurried, the pipe closed, and its EOF awaited."""
    r, w = os.pipe()
    eof = asyncio.Event()
    with open(r, "rb") as stream:
        pump = OutputPump(
            stream, loop=asyncio.get_running_loop(), ring_lines=10, prefix="", on_eof=eof.set
        )
        pump.pace(pace)
        pump.start()
        try:
            yield pump, w
        finally:
            pump.hurry()
            os.close(w)
            await asyncio.wait_for(eof.wait(), 5)


@pytest.mark.anyio
async def test_a_paced_pump_rests_after_each_read_until_hurried() -> None:
    async with _paced_pump(30.0) as (pump, w):
        os.write(w, b"first\n")
        await _until(lambda: pump.tail(5) == ["first"])
        os.write(w, b"second\n")
        await asyncio.sleep(0.2)
        assert pump.tail(5) == ["first"], "read while resting"
        pump.hurry()
        await _until(lambda: pump.tail(5) == ["first", "second"])


@pytest.mark.anyio
async def test_a_paced_pump_does_not_rest_while_the_child_floods_it() -> None:
    async with _paced_pump(30.0) as (pump, w):
        os.write(w, b"x" * 100 + b"\n" + b"verbose line\n" * 1000)  # one read of ~13 KiB
        await _until(lambda: pump.tail(1) == ["verbose line"])
        os.write(w, b"next\n")
        await _until(lambda: pump.tail(1) == ["next"], limit=5.0)


async def _until(cond: Callable[[], bool], limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while not cond():
            await asyncio.sleep(0.01)
