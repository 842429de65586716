"""No orphans: a daemon killed outright takes its llama-server children with it (Linux)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from process_helpers import alive, free_port, wait_until

DAEMON = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from llamasc.process import LaunchSpec, LlamaServer

    async def main() -> None:
        spec = LaunchSpec(Path(sys.argv[1]), Path("m.gguf"), (), int(sys.argv[2]))
        server = await LlamaServer.start(spec)
        print(server.pid, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_sigkilled_daemon_leaves_no_child(tmp_path: Path, fake_llama_server_bin: Path) -> None:
    script = tmp_path / "mini_daemon.py"
    script.write_text(DAEMON)
    port = free_port()
    daemon = subprocess.Popen(
        [sys.executable, str(script), str(fake_llama_server_bin), str(port)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert daemon.stdout is not None
        line = daemon.stdout.readline()  # the daemon prints once its child is ready
        assert line, "the mini daemon died before its child was ready"
        child = int(line)
        assert alive(child)
        daemon.kill()
        daemon.wait(5)
        assert wait_until(lambda: not alive(child), 2.0), "llama-server outlived its daemon"
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(5)
        if daemon.stdout is not None:
            daemon.stdout.close()
