"""Linux (POSIX) hosts over SSH: ``setsid`` with every standard stream redirected, so the
server outlives the SSH channel; a pid file; stop by process group.

The wrapper script is uploaded by SFTP rather than typed on the command line, so the
model's environment (which may hold tokens) never shows up in a remote ``ps``.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Sequence
from typing import Any

from llamasc.errors import RemoteError
from llamasc.process.environment import SCRUBBED_NAMES, SCRUBBED_PREFIXES
from llamasc.remote._base import RemoteLauncher
from llamasc.remote.launch import (
    LaunchSpec,
    RunningServer,
    env_lines,
    server_argv,
)
from llamasc.remote.quoting import posix_join

log = logging.getLogger(__name__)

q = posix_join


def scrub_lines(keep: Sequence[str] = ()) -> list[str]:
    """Shell lines that unset what would steer llama-server, as the daemon's children are
    scrubbed (:mod:`llamasc.process.environment`): the same names and prefixes, minus
    ``keep``. Unsetting, not ``env -i``: the host's PATH and library paths (CUDA, ROCm)
    must reach the server."""
    kept = set(keep)
    names = sorted(n for n in SCRUBBED_NAMES if n not in kept)
    lines = [f"unset {' '.join(names)}"] if names else []
    prefixes = "|".join(SCRUBBED_PREFIXES)
    skip = "".join(f' && $1 != "{name}"' for name in sorted(kept))
    awk = f"/^({prefixes})[A-Za-z0-9_]*=/{skip} {{print $1}}"
    lines.append(f'for _v in $(env | awk -F= {q([awk])}); do unset "$_v"; done')
    return lines


def start_script(spec: LaunchSpec, server: RunningServer) -> str:
    """The ``start.sh`` that runs llama-server in the launch directory.

    It records the process group (this shell, a session leader under ``setsid``), the
    server's PID and, if the server ends on its own, its exit status.
    """
    lines = [
        "#!/bin/sh",
        f"# llamasc bench launch {server.launch_id} ({spec.label})",
        f"cd {q([server.workdir])} || exit 1",
        "echo $$ >pgid.tmp && mv pgid.tmp pgid",
    ]
    lines += scrub_lines(spec.keep_env)
    lines.append(f"export XDG_CONFIG_HOME={q([server.workdir + '/empty-config'])} NO_COLOR=1")
    lines += [f"export {q([f'{k}={v}'])}" for k, v in env_lines(spec.env)]
    lines += [
        f"{q(server_argv(spec, server.port))} </dev/null >server.log 2>&1 &",
        "echo $! >pid.tmp && mv pid.tmp pid",
        "wait $!",
        "echo $? >exit.tmp && mv exit.tmp exit.txt",
        "",
    ]
    return "\n".join(lines)


def stop_script(server: RunningServer, *, term_s: float, kill_s: float, vram_s: float) -> str:
    """One shell command: SIGTERM the group, wait (escalating to SIGKILL), wait for the GPU
    memory to be released where nvidia-smi exists, then remove the launch directory.

    Prints ``escalated`` if SIGKILL was needed and ``gone`` at the end; exits 4 if the
    process survived SIGKILL, 5 if it still holds GPU memory.
    """
    pids = [p for p in (server.pid, server.pgid) if p]
    plist = " ".join(str(p) for p in pids)
    grep = " ".join(f"-e {p}" for p in pids) or "-e NONE"
    group = f"kill -TERM -- -{server.pgid} 2>/dev/null; " if server.pgid else ""
    kgroup = f"kill -KILL -- -{server.pgid} 2>/dev/null; " if server.pgid else ""
    term_ticks, kill_ticks, vram_ticks = int(term_s * 10), int(kill_s * 10), int(vram_s * 2)
    lines = [
        f"pids='{plist}'",
        # zombies count as gone: the host's PID 1 may never reap them
        "alive() { for p in $pids; do if kill -0 $p 2>/dev/null; then "
        "s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null); [ \"$s\" = Z ] || return 0; fi; done; "
        "return 1; }",
        "wait_gone() { i=0; while alive; do [ $i -ge $1 ] && return 1; sleep 0.1; "
        "i=$((i+1)); done; return 0; }",
        f'{group}[ -n "$pids" ] && kill -TERM $pids 2>/dev/null',
        f"if ! wait_gone {term_ticks}; then echo escalated; {kgroup}kill -KILL $pids 2>/dev/null; "
        f"wait_gone {kill_ticks} || {{ echo survived; exit 4; }}; fi",
        'if [ -n "$pids" ] && command -v nvidia-smi >/dev/null 2>&1; then j=0; '
        "while nvidia-smi --query-compute-apps=pid --format=csv,noheader 2>/dev/null "
        f"| cut -d, -f1 | tr -d ' ' | grep -qx {grep}; do "
        f"[ $j -ge {vram_ticks} ] && {{ echo vram-busy; exit 5; }}; "
        "sleep 0.5; j=$((j+1)); done; fi",
    ]
    if server.launch_id and server.workdir.endswith(server.launch_id):
        lines.append(f"rm -rf -- {q([server.workdir])}")
    lines.append("echo gone")
    return "\n".join(lines)


class PosixLauncher(RemoteLauncher):
    """Linux (and other POSIX) hosts."""

    os_name = "linux"
    _home: str | None = None

    def base_dir(self) -> str:
        if self._remote_dir:
            return self._remote_dir
        if self._home is None:
            res = self.run('printf %s "$HOME"')
            if not res.ok or not res.stdout.startswith("/"):
                raise RemoteError(f"cannot find the home directory on {self.host}")
            self._home = res.stdout.strip()
        return posixpath.join(self._home, ".cache", "llamasc-bench")

    def join(self, *parts: str) -> str:
        return posixpath.join(*parts)

    def sftp_path(self, path: str) -> str:
        return path

    def environ_command(self) -> str:
        return "env"

    def version_command(self, binary: str) -> str:
        return q([binary, "--version"])

    def _spawn(self, spec: LaunchSpec, server: RunningServer) -> None:
        script = self.join(server.workdir, "start.sh")
        self.transport.write_file(script, start_script(spec, server).encode(), mode=0o700)
        res = self.run(
            f"cd {q([server.workdir])} && setsid -f /bin/sh ./start.sh </dev/null >/dev/null 2>&1",
            timeout=30.0,
            retry=False,
        )
        if not res.ok:
            raise RemoteError(
                f"could not start llama-server on {self.host} (exit {res.exit_code}): "
                f"{res.output.strip()[:200]}"
            )

    def _read_int(self, server: RunningServer, name: str) -> int | None:
        path = self.join(server.workdir, name)
        if not self.transport.exists(path):
            return None
        try:
            return int(self.transport.read_file(path).decode().strip())
        except ValueError:
            return None

    def _after_ready(self, server: RunningServer) -> None:
        server.pgid = self._read_int(server, "pgid")
        server.pid = self._read_int(server, "pid")

    def _stop_process(self, server: RunningServer) -> None:
        # The wrapper writes pgid first thing; give a just-started one a moment to do it.
        deadline = time.monotonic() + 5.0
        while server.pgid is None and time.monotonic() < deadline:
            server.pgid = self._read_int(server, "pgid")
            if server.pgid is None:
                time.sleep(0.1)
        if server.pid is None:
            server.pid = self._read_int(server, "pid")
        if server.pgid is None:
            log.warning("no process group recorded for %s on %s", server.launch_id, self.host)
        # One round trip: each SSH command can cost a shell start-up (rc files) on the host.
        script = stop_script(
            server, term_s=self.stop_timeout, kill_s=10.0, vram_s=self.vram_timeout
        )
        timeout = self.stop_timeout + 10.0 + self.vram_timeout + 30.0
        res = self.run(script, timeout=timeout)
        said = res.stdout.split()
        if "escalated" in said:
            log.warning("llama-server %s on %s ignored SIGTERM; killed it", server.pid, self.host)
        if res.exit_code == 4:
            raise RemoteError(
                f"llama-server pid {server.pid} on {self.host} is still running after SIGKILL"
            )
        if res.exit_code == 5:
            raise RemoteError(
                f"llama-server pid {server.pid} on {self.host} still holds GPU memory "
                f"{self.vram_timeout:.0f}s after it was stopped"
            )
        if "gone" not in said:
            raise RemoteError(
                f"stopping llama-server on {self.host} failed (exit {res.exit_code}): "
                f"{res.output.strip()[:200]}"
            )

    def _reap_one(self, launch_id: str, meta: dict[str, Any]) -> bool:
        workdir = self.join(self.base_dir(), launch_id)
        # Only processes whose working directory is that launch directory are ours: a PID
        # in an old pid file may belong to anything by now.
        res = self.run(
            f"cd {q([workdir])} 2>/dev/null || exit 0; want=$(pwd -P); "
            "for p in $(cat pgid pid 2>/dev/null); do "
            '[ "$(readlink /proc/$p/cwd 2>/dev/null)" = "$want" ] && echo $p; done; true'
        )
        ours = [int(tok) for tok in res.stdout.split() if tok.isdigit()]
        server = RunningServer(
            launch_id=launch_id,
            host=self.host,
            port=int(meta.get("port") or 0),
            argv=list(meta.get("argv") or []),
            workdir=workdir,
        )
        found = bool(ours)
        if found:
            server.pgid = self._read_int(server, "pgid")
            server.pid = self._read_int(server, "pid")
            log.warning("stopping llama-server %s left running on %s", ours, self.host)
        else:
            server.pgid = server.pid = None  # stale numbers: signal nothing
        self._stop_process(server)
        return found


__all__ = ["PosixLauncher", "start_script", "stop_script"]
