"""The real thing: `llamasc bench` through a real sshd, the Linux launcher starting the real
llama-server with SmolLM2 (a path with spaces and quotes, flags from a llama-swap config
read on the host). SmolLM2 has no MTP head: ``mtp-on`` must come out unsupported, while an
n-gram arm (draftless speculation, works on any model) runs and drafts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from bench_helpers import TINY_PROMPTS, ok_records, processes_with, read_jsonl, wait_no_processes

from sshd_fixture import ALIAS, SshServer

pytestmark = [pytest.mark.real, pytest.mark.sshd, pytest.mark.slow]

NGRAM = "ngram=--spec-type ngram-simple --spec-ngram-simple-size-n 2 --spec-ngram-simple-size-m 8"
SWAP_CONFIG = """\
macros:
  llama: {binary}
  models: {models}
models:
  smol:
    aliases: [smollm2]
    ttl: 60
    env: ["LLAMA_LOG_COLORS=off"]
    cmd: |
      # SmolLM2 as it would run in production
      ${{llama}} --port ${{PORT}} --host 127.0.0.1 \\
        -m "${{models}}/SmolLM2 135M (Q4_1).gguf" \\
        --parallel 4 -c 8192 -t 2 --no-warmup
      # --jinja
  other:
    cmd: docker run -p ${{PORT}}:8080 ghcr.io/ggml-org/llama.cpp:server -m /m.gguf
groups:
  main: {{members: [smol]}}
"""


def _yaml_str(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class RealBench:
    cmd: list[str]
    env: dict[str, str]
    out: Path
    models: Path

    def run(self, *extra: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*self.cmd, *extra], env=self.env, capture_output=True, timeout=600, check=False
        )


@pytest.fixture
def bench(tmp_path: Path, llama_server_bin: Path, smollm2_path: Path, sshd: SshServer) -> RealBench:
    models = tmp_path / "it's a (models) dir"
    models.mkdir()
    (models / "SmolLM2 135M (Q4_1).gguf").symlink_to(smollm2_path)
    config = tmp_path / "llama-swap" / "config.yaml"
    config.parent.mkdir()
    text = SWAP_CONFIG.format(binary=_yaml_str(llama_server_bin), models=_yaml_str(models))
    config.write_text(text)
    out = tmp_path / "results.jsonl"
    cmd = [
        *(sys.executable, "-m", "llamasc", "bench", "--host", ALIAS),
        *("--ssh-config", str(sshd.ssh_config), "--remote-dir", str(tmp_path / "remote")),
        *("--from-llama-swap", f"remote:{config}", "--arm", NGRAM),
        *("--prompts", str(TINY_PROMPTS), "--max-tokens", "16", "--ctx-size", "512"),
        *("--output", str(out), "--start-timeout", "120", "--request-timeout", "120"),
    ]
    env = {**os.environ, "LLAMASC_HOME": str(tmp_path / "home"), "COLUMNS": "150"}
    return RealBench(cmd=cmd, env=env, out=out, models=models)


def test_real_sweep_over_ssh_and_its_report(bench: RealBench) -> None:
    run = bench.run("--reps", "1")
    err = run.stderr.decode()
    assert run.returncode == 0, err
    assert "skipped model other: cmd runs 'docker'" in err
    assert "--parallel 4 -c 8192" in err  # the bench-owned production flags it replaced
    records = read_jsonl(bench.out)
    ok = [r for r in records if r["status"] == "ok"]
    assert Counter(r["arm"] for r in ok) == {"mtp-off": 2, "ngram": 2}
    [mtp] = [r for r in records if r["status"] == "unsupported"]
    assert mtp["arm"] == "mtp-on"
    assert mtp["exit_code"] == 1
    assert any("MTP" in line for line in mtp["stderr_tail"])
    for rec in ok:
        assert rec["host"] == ALIAS
        assert rec["host_os"] == "linux"
        assert rec["model_path"].endswith("SmolLM2 135M (Q4_1).gguf")
        assert rec["build"]  # from llama-server --version on the host
        assert rec["build_info"]  # from /props
        assert rec["n_ctx"] == 512  # not the login environment's LLAMA_ARG_CTX_SIZE (sshd)
        assert rec["total_slots"] == 1  # nor its LLAMA_ARG_N_PARALLEL
        assert 1 < rec["timings"]["predicted_n"] <= 16
        assert rec["finish_reason"] in ("stop", "length")
        assert rec["timings"]["prompt_n"] > 0  # cache_prompt off: the prompt is processed
        assert 0 < rec["ttft_s"] < rec["e2e_s"]
        assert rec["argv"][rec["argv"].index("--parallel") + 1] == "1"
        assert "-t" in rec["argv"]
    ngram = [r for r in ok if r["arm"] == "ngram"]
    assert sum(r["timings"].get("draft_n", 0) for r in ngram) > 0
    assert wait_no_processes(str(bench.models)) == []

    report = subprocess.run(
        [sys.executable, "-m", "llamasc", "bench", "report", str(bench.out), "--format", "json"],
        env=bench.env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert report.returncode == 0, report.stderr.decode()
    rows = {r["arm"]: r for r in json.loads(report.stdout)["rows"]}
    assert rows["mtp-on"]["status"] == "unsupported"
    assert rows["ngram"]["acceptance"] is not None
    assert rows["ngram"]["speedup"] == pytest.approx(
        rows["ngram"]["decode"]["median"] / rows["mtp-off"]["decode"]["median"]
    )


def test_real_sweep_killed_mid_way_resumes_and_leaves_no_server(bench: RealBench) -> None:
    extra = ("--reps", "2", "--arms", "mtp-off,ngram")
    proc = subprocess.Popen(
        [*bench.cmd, *extra], env=bench.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while len(ok_records(bench.out)) < 2:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    before = ok_records(bench.out)
    assert processes_with(str(bench.models)), "the remote server outlives the bench"
    rerun = bench.run(*extra)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert b"earlier bench left running" in rerun.stderr
    ok = ok_records(bench.out)
    assert len(ok) == 8, (
        [(r.get("status"), r.get("arm"), r.get("error")) for r in read_jsonl(bench.out)],
        rerun.stderr.decode()[-2000:],
    )
    assert max(Counter(r["key"] for r in ok).values()) == 1
    assert ok[: len(before)] == before
    assert wait_no_processes(str(bench.models)) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_real_local_bench_ignores_the_shells_llama_arg_and_dies_with_kill_9(
    tmp_path: Path, llama_server_bin: Path, smollm2_path: Path
) -> None:
    """`llamasc bench --host localhost` runs the daemon's LlamaServer: LLAMA_ARG_CTX_SIZE and
    LLAMA_ARG_N_PARALLEL in the user's shell do not reach the measured llama-server (its
    /props, kept in each record, shows what the bench asked for), and a bench killed with
    -9 leaves no llama-server running 2 s later."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "smol.gguf").symlink_to(smollm2_path)
    out = tmp_path / "results.jsonl"
    cmd = [
        *(sys.executable, "-m", "llamasc", "bench", "--host", "localhost"),
        *("--model", f"smol={models / 'smol.gguf'}", "--arms", "mtp-off"),
        *("--llama-server", str(llama_server_bin), "--prompts", str(TINY_PROMPTS)),
        *("--max-tokens", "8", "--ctx-size", "512", "--output", str(out)),
        *("--start-timeout", "120", "--request-timeout", "120"),
    ]
    env = {
        **os.environ,
        "LLAMASC_HOME": str(tmp_path / "home"),
        "COLUMNS": "150",
        "LLAMA_ARG_CTX_SIZE": "64",
        "LLAMA_ARG_N_PARALLEL": "7",
    }
    run = subprocess.run(
        [*cmd, "--reps", "1"], env=env, capture_output=True, timeout=600, check=False
    )
    assert run.returncode == 0, run.stderr.decode()
    ok = ok_records(out)
    assert ok
    for rec in ok:
        assert rec["n_ctx"] == 512
        assert rec["total_slots"] == 1
    assert wait_no_processes(str(models)) == []

    # kill -9 while a server is up (more reps: the sweep is still measuring)
    proc = subprocess.Popen([*cmd, "--reps", "50"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while len(ok_records(out)) <= len(ok):
        assert proc.poll() is None, "bench ended before it was killed"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    assert processes_with(str(models)), "the server of the current cell is up"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert wait_no_processes(str(models), timeout=2) == []
