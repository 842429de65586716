"""The Windows launcher's exact command sequence and quoting, against a recording transport.

What a real Windows host would do is scripted: schtasks/taskkill/powershell answers, and a
local HTTP server standing in for llama-server's /health behind the port forward.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PureWindowsPath

import pytest
from recording_transport import RecordingTransport

from llamasc.errors import RemoteError, SpawnError
from llamasc.process.spec import LaunchSpec
from llamasc.remote.launch import RunningServer
from llamasc.remote.quoting import cmd_unescape, msvc_split
from llamasc.remote.windows import WindowsLauncher, create_task_command, start_cmd

PROFILE = r"C:\Users\Sam O'Neil & Co"
BASE = PROFILE + r"\.llamasc-bench"
SPEC = LaunchSpec(
    binary=PureWindowsPath(r"C:\Program Files\llama.cpp\llama-server.exe"),
    model_path=PureWindowsPath(r"D:\Models (new)\qwen 3.6 50%.gguf"),
    args=(
        "--ctx-size",
        "32768",
        "-ngl",
        "99",
        "--chat-template-kwargs",
        '{"enable_thinking": false}',
    ),
    env={"CUDA_VISIBLE_DEVICES": "0", "ODD": 'a&b|c %PATH% "q"'},
    label="qwen/mtp-on",
)


@dataclass
class Health:
    status: int = 503


@pytest.fixture
def health() -> Iterator[tuple[Health, int]]:
    state = Health()

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state.status if self.path == "/health" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield state, srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _host(health: tuple[Health, int], *, pid: str = "4242") -> RecordingTransport:
    state, port = health
    t = RecordingTransport(forward_to=port)
    alive = {"pid": True}
    t.on(r"^echo %OS%;%USERPROFILE%$", (0, f"Windows_NT;{PROFILE}\r\n"))

    def run_task(_cmd: str) -> tuple[int, str]:
        state.status = 200  # the server comes up
        return 0, "SUCCESS: Attempted to run the scheduled task.\r\n"

    def kill(_cmd: str) -> tuple[int, str]:
        alive["pid"] = False
        state.status = 599
        return 0, f"SUCCESS: The process with PID {pid} has been terminated.\r\n"

    t.on(r"^schtasks /Run ", run_task)
    t.on(r"^PS> \(Get-NetTCPConnection", lambda _c: (0, f"{pid}\r\n" if alive["pid"] else ""))
    t.on(r"^taskkill ", kill)
    t.on(r"^PS> if \(Get-Process", lambda _c: (0, "alive" if alive["pid"] else "gone"))
    t.on(r"^nvidia-smi ", (9009, "'nvidia-smi' is not recognized\r\n"))
    return t


def _launcher(t: RecordingTransport) -> WindowsLauncher:
    return WindowsLauncher(t, rng=random.Random(7), stop_timeout=5, vram_timeout=5)


def _normalize(log: list[str], server: RunningServer) -> list[str]:
    """Replace the run's random launch id and port with placeholders."""
    return [
        line.replace(server.launch_id, "<ID>").replace(str(server.port), "<PORT>") for line in log
    ]


def test_start_and_stop_run_the_documented_sequence(health: tuple[Health, int]) -> None:
    t = _host(health)
    launcher = _launcher(t)
    server = launcher.start(SPEC, timeout=10)
    assert server.pid == 4242
    assert server.base_url == f"http://127.0.0.1:{health[1]}"
    assert t.forwarded == [server.port]
    launcher.stop(server)
    wd = f"{BASE}\\<ID>"
    sftp_wd = "/" + wd.replace("\\", "/")
    assert _normalize(t.log, server) == [
        "echo %OS%;%USERPROFILE%",
        f"MKDIR {sftp_wd}",
        f"PUT {sftp_wd}/launch.json",
        f"PUT {sftp_wd}/start.cmd",
        'schtasks /Create /TN <ID> /TR "\\"C:\\Users\\Sam O\'Neil ^& Co\\.llamasc-bench\\<ID>'
        '\\start.cmd\\"" /SC ONCE /ST 00:00 /F',
        "schtasks /Run /TN <ID>",
        "PS> (Get-NetTCPConnection -LocalPort <PORT> -State Listen -ErrorAction "
        "SilentlyContinue | Select-Object -First 1).OwningProcess",
        "taskkill /PID 4242 /T /F",
        "schtasks /End /TN <ID>",
        "schtasks /Delete /TN <ID> /F",
        "PS> if (Get-Process -Id 4242 -ErrorAction SilentlyContinue) { 'alive' } else { 'gone' }",
        "nvidia-smi --query-compute-apps=pid --format=csv,noheader",
        f'rmdir /S /Q "{wd}"',
    ]


def test_schtasks_create_line_parses_back_to_the_intended_argv() -> None:
    path = PROFILE + r"\.llamasc-bench\llamasc-bench-1-abc\start.cmd"
    line = create_task_command("llamasc-bench-1-abc", path)
    argv = msvc_split(cmd_unescape(line, batch=False))
    assert argv == [
        "schtasks",
        "/Create",
        "/TN",
        "llamasc-bench-1-abc",
        "/TR",
        f'"{path}"',
        "/SC",
        "ONCE",
        "/ST",
        "00:00",
        "/F",
    ]


def test_schtasks_refuses_a_tr_over_the_length_limit() -> None:
    with pytest.raises(RemoteError, match="too long"):
        create_task_command("t", "C:\\" + "x" * 300 + "\\start.cmd")


def test_start_cmd_quotes_paths_flags_and_env_for_cmd() -> None:
    server = RunningServer(
        launch_id="llamasc-bench-5-abc",
        host="winbox",
        port=31234,
        argv=[],
        workdir=BASE + r"\llamasc-bench-5-abc",
    )
    text = start_cmd(SPEC, server)
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    lines = text.split("\r\n")
    assert lines[:3] == ["@echo off", "setlocal DisableDelayedExpansion", "chcp 65001 >nul"]
    assert lines[3] == f'cd /d "{server.workdir}"'
    assert 'set "CUDA_VISIBLE_DEVICES=0"' in lines
    odd = next(ln for ln in lines if ln.startswith('set "ODD='))
    # % doubled; the quote inside the value ends cmd's quoting, so later metachars get ^
    assert cmd_unescape(odd, batch=True) == 'set "ODD=a&b|c %PATH% "q""'
    run = next(ln for ln in lines if "llama-server.exe" in ln)
    command, redirs = run.split(" <nul ", 1)
    argv = msvc_split(cmd_unescape(command, batch=True))
    assert argv == [
        str(SPEC.binary),
        *SPEC.args,
        "-m",
        str(SPEC.model_path),
        "--host",
        "127.0.0.1",
        "--port",
        "31234",
    ]
    assert "50%%.gguf" in command  # the batch file doubles %
    assert redirs == f'>"{server.workdir}\\server.log" 2>&1'
    # redirection first: "echo 1> file" would redirect stream 1 and write nothing useful
    assert lines[-2] == f'>"{server.workdir}\\exit.txt" echo %ERRORLEVEL%'


def test_start_cmd_scrubs_the_task_environment_but_what_is_kept() -> None:
    """The task's environment block may hold LLAMA_ARG_* (the user's, set in the registry):
    cleared before llama-server starts, by prefix and by name, except a --keep-env name."""
    spec = dataclasses.replace(SPEC, keep_env=("LLAMA_ARG_THREADS",))
    server = RunningServer(launch_id="llamasc-bench-x", host="h", port=8123, argv=[])
    server.workdir = "C:\\w"
    lines = start_cmd(spec, server).split("\r\n")
    launch = next(i for i, line in enumerate(lines) if "--port" in line)
    scrub = lines[:launch]
    assert 'set "HF_TOKEN="' in scrub
    assert 'set "LLAMA_API_KEY="' in scrub
    [loop] = [line for line in scrub if line.startswith("for %%P in (")]
    assert "LLAMA_ARG_ LLAMA_SERVER_ AIP_" in loop
    assert "('set %%P 2^>nul')" in loop
    assert 'if /i not "%%V"=="LLAMA_ARG_THREADS" set "%%V="' in loop
    # the model's own variables are set after the scrub, so they always win
    assert scrub.index('set "CUDA_VISIBLE_DEVICES=0"') > scrub.index(loop)


def test_failed_schtasks_run_cleans_up_the_task(health: tuple[Health, int]) -> None:
    t = _host(health)
    t.rules.insert(0, (r"^schtasks /Run ", lambda _c: (1, "ERROR: Access is denied.\r\n")))
    launcher = _launcher(t)
    with pytest.raises(RemoteError, match="Access is denied"):
        launcher.start(SPEC, timeout=5)
    tail = [re.sub(r"llamasc-bench-\d+-[0-9a-f]+", "<ID>", ln) for ln in t.log[-4:]]
    assert tail == [
        "schtasks /Run /TN <ID>",
        "schtasks /End /TN <ID>",
        "schtasks /Delete /TN <ID> /F",
        f'rmdir /S /Q "{BASE}\\<ID>"',
    ]
    assert not any(ln.startswith("taskkill") for ln in t.log)


def test_server_that_exits_before_ready_is_reported_with_its_log(
    health: tuple[Health, int],
) -> None:
    t = _host(health)

    def run_then_die(cmd: str) -> tuple[int, str]:
        launch_id = cmd.rsplit(maxsplit=1)[-1]
        wd = "/" + (BASE + "\\" + launch_id).replace("\\", "/")
        t.files[f"{wd}/server.log"] = (
            b"load_model: loading model\r\nfailed to create MTP context\r\n"
            b"srv  llama_server: exiting due to model loading error\r\n"
        )
        t.files[f"{wd}/exit.txt"] = b"1 \r\n"
        return 0, "SUCCESS\r\n"

    t.rules.insert(0, (r"^schtasks /Run ", run_then_die))
    t.rules.insert(0, (r"^PS> \(Get-NetTCPConnection", lambda _c: (0, "")))
    launcher = _launcher(t)
    with pytest.raises(SpawnError) as info:
        launcher.start(SPEC, timeout=10)
    assert info.value.returncode == 1
    assert info.value.stderr_tail[-1].endswith("exiting due to model loading error")
    assert "failed to create MTP context" in info.value.stderr_tail
    assert any(ln.startswith("schtasks /Delete") for ln in t.log)
    assert not any(ln.startswith("taskkill") for ln in t.log)


def test_stop_waits_until_the_process_is_gone_and_vram_is_free(
    health: tuple[Health, int],
) -> None:
    t = _host(health)
    answers = iter(["alive", "alive", "gone"])
    gpu = iter(["4242, 1200 MiB\r\n", "4242, 10 MiB\r\n", ""])
    t.rules.insert(0, (r"^PS> if \(Get-Process", lambda _c: (0, next(answers))))
    t.rules.insert(0, (r"^nvidia-smi ", lambda _c: (0, next(gpu))))
    launcher = _launcher(t)
    server = launcher.start(SPEC, timeout=10)
    launcher.stop(server)
    assert sum(ln.startswith("PS> if (Get-Process") for ln in t.log) == 3
    assert sum(ln.startswith("nvidia-smi") for ln in t.log) == 3


def test_stop_fails_loudly_when_the_process_survives(health: tuple[Health, int]) -> None:
    t = _host(health)
    t.rules.insert(0, (r"^PS> if \(Get-Process", lambda _c: (0, "alive")))
    launcher = WindowsLauncher(t, rng=random.Random(1), stop_timeout=0.3)
    server = launcher.start(SPEC, timeout=10)
    with pytest.raises(RemoteError, match="survived taskkill"):
        launcher.stop(server)


def test_powershell_as_default_shell_is_refused(health: tuple[Health, int]) -> None:
    t = _host(health)
    t.rules.insert(0, (r"^echo %OS%", lambda _c: (0, "%OS%;%USERPROFILE%\r\n")))
    with pytest.raises(RemoteError, match=r"not cmd\.exe"):
        _launcher(t).start(SPEC, timeout=5)


def test_reap_stale_stops_only_a_server_that_is_ours(health: tuple[Health, int]) -> None:
    t = _host(health, pid="777")
    sftp_base = "/" + BASE.replace("\\", "/")
    for launch_id, port in (
        ("llamasc-bench-31234-aaaaaa", 31234),
        ("llamasc-bench-31999-bbbbbb", 31999),
    ):
        meta = {"port": port, "owner": {"host": "elsewhere", "pid": 1, "started": 0}}
        t.files[f"{sftp_base}/{launch_id}/launch.json"] = json.dumps(meta).encode()
    t.files[f"{sftp_base}/unrelated/x"] = b""

    def cmdline(_c: str) -> tuple[int, str]:
        return 0, "llama-server.exe -m x.gguf --host 127.0.0.1 --port 31234\r\n"

    t.on(r"^PS> \(Get-CimInstance", cmdline)
    cleaned = _launcher(t).reap_stale()
    assert cleaned == ["llamasc-bench-31234-aaaaaa"]
    assert t.log.count("taskkill /PID 777 /T /F") == 1
    assert "schtasks /Delete /TN llamasc-bench-31234-aaaaaa /F" in t.log
    assert "schtasks /Delete /TN llamasc-bench-31999-bbbbbb /F" in t.log
    assert f'rmdir /S /Q "{BASE}\\llamasc-bench-31999-bbbbbb"' in t.log
