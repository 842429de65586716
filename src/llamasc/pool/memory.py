"""How much memory a sidecar will need, per device, before it starts.

llama.cpp's own projection first: ``llama-fit-params`` (shipped beside ``llama-server``)
loads the model's metadata with the same flags and prints, with ``--verbose``, a memory
breakdown and ``projected to use N MiB of host memory`` without allocating anything. When
that program is missing or fails, an estimate from the GGUF's metadata (read with the
``gguf`` package): weights from the tensor sizes, KV cache from layers, KV heads, head size,
context and cache types, plus a compute buffer. Projections are cached by model file (and
its mtime), memory flags and env, so flag sets that differ only elsewhere share one.

Devices are named as the budget names them: ``host``, ``cuda0``, ``rocm1``, ``vulkan0``...,
and an RPC worker's device (``--rpc`` in a model's operator arguments) ``rpc:HOST:PORT``:
llama-fit-params connects to the workers and projects what each of their devices will hold,
so memory admission counts them like local devices. The GGUF estimate cannot know how
llama.cpp will split a model over workers: it puts the whole model on ``host``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from llamasc.flags import load_default_table
from llamasc.process.rpc import rpc_workers

log = logging.getLogger(__name__)

MIB = 1024**2
RPC_DEVICE = "rpc:"  # + the worker's host:port, as in --rpc and a memory budget
_ADDRESS = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d+$")
FIT_TIMEOUT = 30.0

# the flags that change what a sidecar holds; the rest (sampling, server options) do not,
# and llama-fit-params refuses server-only ones such as --slot-save-path
_MEMORY_FLAGS = frozenset(
    {
        "--ctx-size", "--gpu-layers", "--cache-type-k", "--cache-type-v", "--parallel",
        "--flash-attn", "--batch-size", "--ubatch-size", "--tensor-split", "--split-mode",
        "--main-gpu", "--device", "--override-tensor", "--cpu-moe", "--n-cpu-moe", "--fit",
        "--fit-target", "--fit-ctx", "--kv-unified", "--swa-full", "--kv-offload",
        "--load-mode", "--mmproj", "--spec-draft-model", "--spec-draft-ngl", "--rpc",
    }
)  # fmt: skip
_HOST = re.compile(r"projected to use (\d+) MiB of host memory")
_DEVICE_ROW = re.compile(r"\|\s*-\s*([A-Za-z]+\d+)\b[^|]*\|\s*\d+\s*=\s*\d+\s*\+\s*\(\s*(\d+)\s*=")
# an RPC worker's device: ``RPC0 (host:port)`` in recent builds, ``RPC[host:port]`` in older
_RPC_ROW = re.compile(
    r"\|\s*-\s*(?:RPC(\d+)\s*(?:\(([^)]*)\))?|RPC\[([^\]]+)\])[^|]*\|\s*\d+\s*=\s*\d+\s*\+"
    r"\s*\(\s*(\d+)\s*="
)
_HOST_ROW = re.compile(r"\|\s*-\s*Host\s*\|\s*(\d+)\s*=")
# bytes per element of each KV cache type
_CACHE_BYTES = {
    "f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32,
    "q5_0": 22 / 32, "q5_1": 24 / 32, "iq4_nl": 18 / 32,
}  # fmt: skip


def fit_params_binary(server_binary: Path) -> Path | None:
    """``llama-fit-params`` beside ``llama-server``, if this build has it."""
    name = "llama-fit-params.exe" if sys.platform == "win32" else "llama-fit-params"
    candidate = Path(server_binary).parent / name
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def memory_args(args: Sequence[str]) -> list[str]:
    """The subset of canonical llama-server ``args`` that decides memory use."""
    table = load_default_table()
    out: list[str] = []
    i = 0
    while i < len(args):
        tok = args[i]
        hit = table.lookup(tok) if tok.startswith("-") else None
        arity = hit[0].arity if hit is not None and not hit[1] else 0
        if hit is not None and hit[0].canonical in _MEMORY_FLAGS:
            out += args[i : i + 1 + arity]
        i += 1 + arity
    return out


def parse_fit_output(text: str) -> dict[str, int]:
    """Bytes per device from ``llama-fit-params --verbose`` output ({} if none found)."""
    need: dict[str, int] = {}
    for m in _DEVICE_ROW.finditer(text):
        device = m.group(1).lower()
        if device != "host" and not device.startswith("rpc"):
            need[device] = int(m.group(2)) * MIB
    for m in _RPC_ROW.finditer(text):
        index, desc, older, mib = m.groups()
        where = older or (desc or "").strip()
        device = f"{RPC_DEVICE}{where}" if _ADDRESS.match(where) else f"rpc{index}"
        need[device] = need.get(device, 0) + int(mib) * MIB
    host = _HOST.search(text)
    if host is not None:
        need["host"] = int(host.group(1)) * MIB
    else:
        row = _HOST_ROW.search(text)
        if row is not None:
            need["host"] = int(row.group(1)) * MIB
    return need


async def fit_params(
    binary: Path, model: Path, args: Sequence[str], env: Mapping[str, str] | None = None
) -> dict[str, int]:
    """Run llama-fit-params; {} when it fails or prints nothing we understand."""
    argv = [str(binary), "-m", str(model), *memory_args(args), "--verbose"]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    except OSError as exc:
        log.warning("cannot run %s: %s", binary, exc)
        return {}
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), FIT_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.warning("llama-fit-params took more than %gs for %s", FIT_TIMEOUT, model.name)
        return {}
    except BaseException:  # cancelled (the request gave up, or shutdown): leave nothing behind
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(BaseException):
            await proc.wait()  # reaps it and closes its pipes' transports
        raise
    text = out.decode("utf-8", "replace")
    if proc.returncode != 0:
        last = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["no output"]
        log.warning("llama-fit-params failed for %s: %s", model.name, last[0])
        return {}
    return parse_fit_output(text)


def _flag_value(args: Sequence[str], name: str) -> str | None:
    value = None
    for i, tok in enumerate(args[:-1]):
        if tok == name:
            value = args[i + 1]
    return value


def gguf_estimate(model: Path, args: Sequence[str]) -> dict[str, int]:
    """An estimate from the GGUF's metadata: weights + KV cache + compute buffer, on host.

    {} when the file cannot be read as a GGUF.
    """
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(model))
    except Exception as exc:  # not a GGUF, unreadable, or the gguf package is missing
        log.debug("no GGUF metadata for %s: %s", model, exc)
        return {}

    def field(name: str) -> int | None:
        f = reader.fields.get(name)
        try:
            return int(f.contents()) if f is not None else None
        except (TypeError, ValueError):
            return None

    arch = reader.fields.get("general.architecture")
    prefix = str(arch.contents()) if arch is not None else "llama"
    weights = sum(int(t.n_bytes) for t in reader.tensors)
    layers = field(f"{prefix}.block_count") or 0
    heads = field(f"{prefix}.attention.head_count") or 1
    kv_heads = field(f"{prefix}.attention.head_count_kv") or heads
    embd = field(f"{prefix}.embedding_length") or 0
    k_dim = field(f"{prefix}.attention.key_length") or embd // max(heads, 1)
    v_dim = field(f"{prefix}.attention.value_length") or k_dim
    train_ctx = field(f"{prefix}.context_length") or 4096
    ctx_arg = _flag_value(args, "--ctx-size")
    ctx = int(ctx_arg) if ctx_arg and ctx_arg.isdigit() and int(ctx_arg) > 0 else train_ctx
    bk = _CACHE_BYTES.get(_flag_value(args, "--cache-type-k") or "f16", 2.0)
    bv = _CACHE_BYTES.get(_flag_value(args, "--cache-type-v") or "f16", 2.0)
    kv = layers * ctx * kv_heads * (k_dim * bk + v_dim * bv)
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab = len(tokens.data) if tokens is not None else 32000
    ubatch_arg = _flag_value(args, "--ubatch-size")
    ubatch = int(ubatch_arg) if ubatch_arg and ubatch_arg.isdigit() else 512
    compute = vocab * ubatch * 4 + 16 * MIB  # the logits dominate a small model's buffer
    return {"host": int(weights + kv + compute)}


def rpc_devices(need: dict[str, int], args: Sequence[str]) -> dict[str, int]:
    """``rpc0`` (a worker's device the output did not name by address) is the ``N``-th worker
    of the ``--rpc`` list: ``rpc:HOST:PORT``, the name a budget gives a worker's device. So
    two models spread over the same worker are counted against the same budget."""
    workers = rpc_workers(args)
    out: dict[str, int] = {}
    for device, v in need.items():
        name = device
        if device.startswith("rpc") and device[3:].isdigit() and int(device[3:]) < len(workers):
            name = RPC_DEVICE + workers[int(device[3:])].address
        out[name] = out.get(name, 0) + v
    return out


def physical_devices(need: dict[str, int], env: Mapping[str, str] | None) -> dict[str, int]:
    """``cuda0`` under ``CUDA_VISIBLE_DEVICES=2,3`` is the host's ``cuda2``: the budget's name."""
    visible = (env or {}).get("CUDA_VISIBLE_DEVICES", "")
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    if not ids or not all(v.isdigit() for v in ids):
        return need
    out: dict[str, int] = {}
    for device, v in need.items():
        name = device
        if device.startswith("cuda") and device[4:].isdigit() and int(device[4:]) < len(ids):
            name = f"cuda{ids[int(device[4:])]}"
        out[name] = out.get(name, 0) + v
    return out


class Projector:
    """Projected need per sidecar, cached by what decides it: the model file (path and mtime),
    the memory flags (:func:`memory_args`) and the sidecar's env (which devices it sees). Keys
    that differ only in sampling or server flags share one projection: a new flag set costs
    no second run of ``llama-fit-params`` (0.5-0.9 s)."""

    def __init__(self, server_binary: Path) -> None:
        self.fit_binary = fit_params_binary(server_binary)
        self._cache: dict[tuple[object, ...], dict[str, int]] = {}
        self._pending: dict[tuple[object, ...], asyncio.Future[dict[str, int]]] = {}
        self._by_key: dict[str, tuple[object, ...]] = {}
        self._estimated: set[Path] = set()

    async def need(
        self, key: str, model: Path, args: Sequence[str], env: Mapping[str, str] | None = None
    ) -> dict[str, int]:
        try:
            mtime = os.stat(model).st_mtime  # one stat per new key: not worth a thread
        except OSError:
            return {}
        ck = (str(model), mtime, tuple(memory_args(args)), tuple(sorted((env or {}).items())))
        self._by_key[key] = ck
        if ck in self._cache:
            return self._cache[ck]
        pending = self._pending.get(ck)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        self._pending[ck] = fut
        try:
            result = await self._project(model, args, env)
        except BaseException:
            fut.set_result({})
            raise
        finally:
            del self._pending[ck]
        if not fut.done():
            fut.set_result(result)
        self._cache[ck] = result
        return result

    def cached(self, key: str) -> dict[str, int] | None:
        ck = self._by_key.get(key)
        return None if ck is None else self._cache.get(ck)

    async def _project(
        self, model: Path, args: Sequence[str], env: Mapping[str, str] | None
    ) -> dict[str, int]:
        if self.fit_binary is not None:
            need = await fit_params(self.fit_binary, model, args, env)
            if need:
                return rpc_devices(physical_devices(need, env), args)
        need = await asyncio.to_thread(gguf_estimate, model, args)
        if need and model not in self._estimated:
            self._estimated.add(model)
            log.info(
                "memory of %s is an estimate from its GGUF metadata (no llama-fit-params): %d MiB",
                model.name,
                need["host"] // MIB,
            )
        return need


__all__ = [
    "Projector",
    "fit_params",
    "fit_params_binary",
    "gguf_estimate",
    "memory_args",
    "parse_fit_output",
    "physical_devices",
    "rpc_devices",
]
