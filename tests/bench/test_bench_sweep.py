"""Sweeps end to end against our fake llama-server: locally and through the real sshd.

The stand-in binary refuses ``--spec-type draft-mtp`` like a real server on a model without
MTP layers, so the default ``mtp-on`` arm must come out as unsupported while the others run.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from bench_helpers import (
    MTP_ERROR,
    TINY_PROMPTS,
    fake_server_wrapper,
    ok_records,
    read_jsonl,
    wait_no_processes,
)

from llamasc.bench import BenchOptions, run_bench
from llamasc.bench.events import Event, Prepared, RequestDone, SweepStarted
from llamasc.remote.ssh import SSHOptions
from sshd_fixture import ALIAS, SshServer


@pytest.fixture
def setup(tmp_path: Path, isolated_env: Path) -> dict[str, Path]:
    # spaces and quotes in every path the remote command lines must carry
    root = tmp_path / 'it\'s a "bench" dir'
    models = root / "models"
    models.mkdir(parents=True)
    for name in ("alpha", "beta"):
        (models / f"{name} q4.gguf").write_bytes(b"GGUF fake")
    return {"root": root, "models": models, "out": tmp_path / "results.jsonl"}


def _opts(s: dict[str, Path], binary: Path, **kw: object) -> BenchOptions:
    base: dict[str, object] = {
        "host": "localhost",
        "output": s["out"],
        "model_options": [f"{n}={s['models'] / f'{n} q4.gguf'}" for n in ("alpha", "beta")],
        "arm_options": ["ngram=--spec-type ngram-simple --spec-ngram-simple-size-n 2"],
        "llama_server": str(binary),
        "prompts": TINY_PROMPTS,
        "reps": 2,
        "max_tokens": 8,
        "ctx_size": 512,
        "start_timeout": 30,
        "request_timeout": 30,
    }
    base.update(kw)
    return BenchOptions(**base)  # type: ignore[arg-type]


def _check_complete_sweep(out: Path, host: str) -> None:
    records = read_jsonl(out)
    ok = [r for r in records if r["status"] == "ok"]
    unsupported = [r for r in records if r["status"] == "unsupported"]
    # 2 models x 2 arms that run x 2 prompts x 2 reps; the warm-ups are not recorded
    assert Counter((r["model"], r["arm"]) for r in ok) == {
        ("alpha", "mtp-off"): 4,
        ("alpha", "ngram"): 4,
        ("beta", "mtp-off"): 4,
        ("beta", "ngram"): 4,
    }
    assert sorted((r["model"], r["arm"]) for r in unsupported) == [
        ("alpha", "mtp-on"),
        ("beta", "mtp-on"),
    ]
    assert all(MTP_ERROR in r["stderr_tail"] for r in unsupported)
    assert all(r["exit_code"] == 1 for r in unsupported)
    assert len({r["key"] for r in records}) == len(records)
    rec = ok[0]
    assert rec["host"] == host
    assert rec["build"] == "11434 (fake)"
    assert rec["timings"]["predicted_n"] == 8
    assert rec["timings"]["predicted_ms"] > 0
    assert rec["ttft_s"] is not None
    assert rec["e2e_s"] >= rec["ttft_s"]
    assert rec["flags"][:6] == ["-m", rec["model_path"], "--ctx-size", "512", "--parallel", "1"]
    assert rec["argv"][-4:-1] == ["--host", "127.0.0.1", "--port"]
    assert rec["argv"][1:-4] == [*rec["flags"][2:], "-m", rec["model_path"]]
    assert {r["prompt_id"] for r in ok} == {"repeat-list", "repeat-prose"}
    assert {r["rep"] for r in ok} == {0, 1}
    ngram = next(r for r in ok if r["arm"] == "ngram")
    assert ngram["arm_flags"] == ngram["flags"][6:]


def test_local_sweep_then_resume_then_fresh(setup: dict[str, Path], tmp_path: Path) -> None:
    binary = fake_server_wrapper(tmp_path / "bin")
    events: list[Event] = []
    outcome = run_bench(_opts(setup, binary), on_event=events.append)
    assert outcome.summary.measured == 16
    assert outcome.summary.unsupported == ["alpha/mtp-on", "beta/mtp-on"]
    _check_complete_sweep(setup["out"], "localhost")
    started = next(e for e in events if isinstance(e, SweepStarted))
    assert (started.total, started.skipped) == (24, 0)
    assert sum(isinstance(e, RequestDone) for e in events) == 16
    assert wait_no_processes(str(setup["models"])) == []

    # a rerun has nothing left to do
    before = setup["out"].read_bytes()
    again = run_bench(_opts(setup, binary))
    assert (again.summary.measured, again.summary.skipped) == (0, 16)
    assert setup["out"].read_bytes() == before

    # drop two measurements: exactly those are measured again
    lines = before.decode().splitlines(keepends=True)

    def dropped(line: str) -> bool:
        rec = json.loads(line)
        return (rec["arm"], rec["prompt_id"], rec["rep"]) == ("ngram", "repeat-prose", 1)

    kept = [ln for ln in lines if not dropped(ln)]
    assert len(kept) == len(lines) - 2
    setup["out"].write_text("".join(kept))
    third = run_bench(_opts(setup, binary))
    assert third.summary.measured == 2
    _check_complete_sweep(setup["out"], "localhost")

    # --fresh keeps the old file under another name and starts over
    fresh = run_bench(_opts(setup, binary, fresh=True, models=["beta"], arms=["mtp-off"]))
    assert fresh.moved_aside is not None
    assert len(read_jsonl(fresh.moved_aside)) == 18
    assert len(ok_records(setup["out"])) == 4


def test_a_server_dying_mid_cell_ends_that_cell_and_the_sweep_goes_on(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    # every server dies after answering 3 completions: the warm-up and 2 measurements
    binary = fake_server_wrapper(tmp_path / "bin", {"FAKE_LLAMA_CRASH_AFTER_REQUESTS": "3"})
    outcome = run_bench(_opts(setup, binary, arms=["mtp-off", "ngram"], models=["alpha"]))
    assert outcome.summary.failed_cells == ["alpha/mtp-off", "alpha/ngram"]
    ok = ok_records(setup["out"])
    assert Counter(r["arm"] for r in ok) == {"mtp-off": 2, "ngram": 2}
    assert wait_no_processes(str(setup["models"])) == []


def test_missing_model_file_is_reported_before_anything_starts(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    from llamasc.errors import ConfigError

    binary = fake_server_wrapper(tmp_path / "bin")
    with pytest.raises(ConfigError, match="not found") as info:
        run_bench(_opts(setup, binary, model_options=["x=/no/such/file.gguf"]))
    assert info.value.details == ("x: /no/such/file.gguf",)
    assert not setup["out"].exists()


@pytest.mark.sshd
def test_sweep_through_sshd_with_the_posix_launcher(
    setup: dict[str, Path], tmp_path: Path, sshd: SshServer
) -> None:
    binary = fake_server_wrapper(setup["root"] / "bin dir")
    remote_dir = tmp_path / "remote work"
    events: list[Event] = []
    opts = _opts(
        setup,
        binary,
        host=ALIAS,
        remote_dir=str(remote_dir),
        ssh=SSHOptions(host=ALIAS, ssh_config=sshd.ssh_config),
    )
    outcome = run_bench(opts, on_event=events.append)
    assert outcome.host_os == "linux"
    assert next(e for e in events if isinstance(e, Prepared)).host_os == "linux"
    _check_complete_sweep(setup["out"], ALIAS)
    assert wait_no_processes(str(setup["models"])) == []
    assert list(remote_dir.iterdir()) == []  # every launch directory was removed


@pytest.mark.sshd
def test_a_dropped_ssh_connection_mid_sweep_is_survived(
    setup: dict[str, Path], tmp_path: Path, sshd: SshServer
) -> None:
    from llamasc.remote.posix import PosixLauncher
    from llamasc.remote.ssh import SSHTransport

    transport = SSHTransport(SSHOptions(host=ALIAS, ssh_config=sshd.ssh_config))
    launcher = PosixLauncher(transport, remote_dir=str(tmp_path / "remote"))
    drops: list[int] = []

    def drop_now_and_then(event: Event) -> None:
        if isinstance(event, RequestDone) and len(drops) < 2 and event.record["rep"] == 0:
            ssh = transport.connect().get_transport()
            assert ssh is not None
            ssh.close()  # the link goes down between two requests, the server lives on
            drops.append(1)

    opts = _opts(
        setup, fake_server_wrapper(tmp_path / "bin"), host=ALIAS, models=["alpha"], arms=["mtp-off"]
    )
    try:
        outcome = run_bench(opts, on_event=drop_now_and_then, launcher=launcher)
    finally:
        transport.close()
    assert len(drops) == 2
    assert (outcome.summary.measured, outcome.summary.errors) == (4, 0)
    assert outcome.summary.failed_cells == []
    assert wait_no_processes(str(setup["models"])) == []


def test_models_and_flags_from_a_llama_swap_config(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = fake_server_wrapper(tmp_path / "bin")
    models = tmp_path / "swap models"  # a space, and (in cmd's double quotes) no '"'
    models.mkdir()
    for name in ("alpha", "beta"):
        (models / f"{name} q4.gguf").write_bytes(b"GGUF")
    monkeypatch.setenv("BENCH_MODELS", str(models))
    config = tmp_path / "config.yaml"
    config.write_text(
        "macros:\n"
        f"  llama: '{binary}'\n"
        "  root: ${env.BENCH_MODELS}\n"
        "models:\n"
        "  alpha:\n"
        "    aliases: [a]\n"
        "    env: [MARKER=from-llama-swap]\n"
        "    cmd: |\n"
        '      ${llama} --port ${PORT} -m "${root}/alpha q4.gguf" \\\n'
        "        # --top-k 40\n"
        "        --parallel 8 --top-k 20\n"
        "  beta:\n"
        '    cmd: ${llama} -m "${root}/beta q4.gguf"\n'
    )
    events: list[Event] = []
    opts = _opts(
        setup,
        binary,
        model_options=[],
        from_llama_swap=str(config),
        models=["a"],
        arms=["mtp-off"],
        llama_server=None,
        reps=1,
    )
    outcome = run_bench(opts, on_event=events.append)
    assert [m.id for m in outcome.models] == ["alpha"]
    prepared = next(e for e in events if isinstance(e, Prepared))
    assert prepared.models == (("alpha", ("--port", "0", "--parallel", "8")),)
    ok = ok_records(setup["out"])
    assert len(ok) == 2
    assert ok[0]["argv"][0] == str(binary)  # the config's binary, as in production
    assert ok[0]["flags"][6:] == ["--top-k", "20"]
    assert wait_no_processes(str(models)) == []
