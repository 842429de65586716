"""Linux (POSIX) hosts over SSH: ``setsid`` with every standard stream redirected, so the
server outlives the SSH channel; a pid file; stop by process group.

The wrapper script is uploaded by SFTP rather than typed on the command line, so the
model's environment (which may hold tokens) never shows up in a remote ``ps``.
"""

from __future__ import annotations

import logging
import posixpath
import time
from typing import Any

from llamasc.errors import RemoteError
from llamasc.remote._base import RemoteLauncher
from llamasc.remote.launch import (
    LaunchSpec,
    RunningServer,
    env_lines,
    parse_pid_column,
    server_argv,
)
from llamasc.remote.quoting import posix_join

log = logging.getLogger(__name__)

q = posix_join


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
    lines += [f"export {q([f'{k}={v}'])}" for k, v in env_lines(spec.env)]
    lines += [
        f"{q(server_argv(spec, server.port))} </dev/null >server.log 2>&1 &",
        "echo $! >pid.tmp && mv pid.tmp pid",
        "wait $!",
        "echo $? >exit.tmp && mv exit.tmp exit.txt",
        "",
    ]
    return "\n".join(lines)


def alive_command(pids: list[int]) -> str:
    """Prints the PIDs that still run (zombies count as gone: PID 1 may not reap them)."""
    plist = " ".join(str(p) for p in pids)
    return (
        f"for p in {plist}; do if kill -0 $p 2>/dev/null; then "
        's=$(cut -d" " -f3 /proc/$p/stat 2>/dev/null); [ "$s" = Z ] || echo $p; fi; done; true'
    )


def _signal_command(sig: str, pgid: int, pids: list[int]) -> str:
    plist = " ".join(str(p) for p in pids)
    return f"kill -{sig} -- -{pgid} 2>/dev/null; kill -{sig} {plist} 2>/dev/null; true"


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

    def _alive(self, pids: list[int]) -> list[int]:
        if not pids:
            return []
        res = self.run(alive_command(pids))
        return [int(tok) for tok in res.stdout.split() if tok.isdigit()]

    def _kill(self, server: RunningServer) -> None:
        # The wrapper writes pgid first thing; give a just-started one a moment to do it.
        deadline = time.monotonic() + 5.0
        while server.pgid is None and time.monotonic() < deadline:
            server.pgid = self._read_int(server, "pgid")
            if server.pgid is None:
                time.sleep(0.1)
        if server.pid is None:
            server.pid = self._read_int(server, "pid")
        pids = [p for p in (server.pid, server.pgid) if p]
        if server.pgid is None:
            log.warning("no process group recorded for %s on %s", server.launch_id, self.host)
            return
        self.run(_signal_command("TERM", server.pgid, pids))
        if self._wait_gone(pids, self.stop_timeout):
            return
        log.warning("llama-server %s on %s ignored SIGTERM; killing it", pids, self.host)
        self.run(_signal_command("KILL", server.pgid, pids))
        if not self._wait_gone(pids, 10.0):
            raise RemoteError(f"llama-server {pids} on {self.host} is still running after SIGKILL")

    def _wait_gone(self, pids: list[int], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._alive(pids):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _gpu_pids(self) -> list[int] | None:
        res = self.run(
            "command -v nvidia-smi >/dev/null 2>&1 || exit 3; "
            "nvidia-smi --query-compute-apps=pid --format=csv,noheader"
        )
        if res.exit_code == 3 or not res.ok:
            return None
        return parse_pid_column(res.stdout)

    def _remove_workdir(self, server: RunningServer) -> None:
        if server.launch_id and server.workdir.endswith(server.launch_id):
            self.run(f"rm -rf -- {q([server.workdir])}")

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
            self._kill(server)
        self._remove_workdir(server)
        return found


__all__ = ["PosixLauncher", "alive_command", "start_script"]
