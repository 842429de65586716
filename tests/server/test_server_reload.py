"""Config reload on a running daemon (llama-swap and native files), over the fake
llama-server: unchanged models keep their process, changed ones are replaced after their
in-flight requests, removed ones 404, a broken file keeps the old config."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from server_fakes import ThreadDaemon, free_port_range, wait_until

from llamasc.config.settings import load_settings

SWAP = """
models:
  a:
    cmd: {bin} -m {gguf} --port ${{PORT}} --top-k 5
    env: ["FAKE_LLAMA_TOKEN_DELAY=0.05", "MARK={mark}"]
  b:
    cmd: {bin} -m {gguf} --port ${{PORT}}
{extra}
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def reloadable(
    tmp_path: Path, fake_llama_server_bin: Path, isolated_env: Path
) -> Iterator[Callable[..., tuple[ThreadDaemon, Path]]]:
    started: list[ThreadDaemon] = []
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"")

    def make(
        text: str, suffix: str = ".yaml", watch: bool = False, **fmt: Any
    ) -> tuple[ThreadDaemon, Path]:
        cfg = tmp_path / f"config{suffix}"
        cfg.write_text(text.format(bin=fake_llama_server_bin, gguf=gguf, **fmt))
        lo, hi = free_port_range()
        cli = {
            "llama_server_bin": str(fake_llama_server_bin),
            "bind": "127.0.0.1:0",
            "port_range": f"{lo}-{hi}",
            "max_sidecars": "4",
            "home": str(tmp_path / "home"),
        }

        def load():  # what SIGHUP re-reads
            return load_settings(cli, env={}, config_path=cfg)

        paths = [str(cfg)] if watch else []
        d = ThreadDaemon(load(), reload_source=load, watch_paths=paths)
        started.append(d)
        return d, cfg

    yield make
    for d in started:
        if d.thread.is_alive():
            d.stop()


def _pid(c: httpx.Client, model: str) -> int:
    r = c.post("/v1/chat/completions", json={"model": model, "messages": [], "max_tokens": 2})
    assert r.status_code == 200, r.text
    return int(r.json()["fake"]["pid"])


def test_reload_keeps_unchanged_models_and_replaces_changed_after_in_flight(
    reloadable: Callable[..., tuple[ThreadDaemon, Path]], fake_llama_server_bin: Path
) -> None:
    d, cfg = reloadable(SWAP, mark="1", extra="")
    with httpx.Client(base_url=d.url, timeout=30) as c:
        pid_a, pid_b = _pid(c, "a"), _pid(c, "b")
        streamed: dict[str, Any] = {}

        def long_stream() -> None:
            with httpx.Client(base_url=d.url, timeout=60) as c2:
                body = {"model": "a", "messages": [], "max_tokens": 40, "stream": True}
                r = c2.post("/v1/chat/completions", json=body)
                streamed["status"], streamed["text"] = r.status_code, r.text

        t = threading.Thread(target=long_stream)
        t.start()
        wait_until(
            lambda: any(s["in_flight"] for s in c.get("/sidecars").json()["sidecars"]),
            10,
            "the stream in flight",
        )
        text = cfg.read_text().replace("MARK=1", "MARK=2")
        text += "  c:\n    cmd: " + f"{fake_llama_server_bin} -m x.gguf --port ${{PORT}}\n"
        cfg.write_text(text)
        result = d.daemon.reload_threadsafe()
        assert (result.ok, result.changed, result.kept, result.added) == (
            True,
            ["a"],
            ["b"],
            ["c"],
        )
        # the in-flight request on the old child of a finishes normally
        t.join(60)
        assert streamed["status"] == 200
        assert streamed["text"].rstrip().endswith("data: [DONE]")
        wait_until(lambda: not _alive(pid_a), 30, "the old child of a to stop")
        assert _alive(pid_b)
        assert _pid(c, "b") == pid_b  # unchanged: the same process
        new_a = _pid(c, "a")
        assert new_a != pid_a
        env = c.get("/props", params={"model": "a"}).json()["fake"]["env"]
        assert env["MARK"] == "2"
        assert _pid(c, "c")  # a new model is available at once


def test_removed_model_404s_and_a_broken_file_keeps_the_old_config(
    reloadable: Callable[..., tuple[ThreadDaemon, Path]],
) -> None:
    d, cfg = reloadable(SWAP, mark="1", extra="")
    with httpx.Client(base_url=d.url, timeout=30) as c:
        pid_b = _pid(c, "b")
        good = cfg.read_text()
        cfg.write_text(good + "groups:\n  g: {members: [ghost]}\n")
        result = d.daemon.reload_threadsafe()
        assert not result.ok
        assert result.error is not None
        assert "groups -> g -> members: unknown model 'ghost'" in result.error
        assert _pid(c, "b") == pid_b  # still served by the same child
        a_only = good.split("  b:")[0]
        cfg.write_text(a_only)
        result = d.daemon.reload_threadsafe()
        assert result.removed == ["b"]
        r = c.post("/v1/chat/completions", json={"model": "b", "messages": []})
        assert r.status_code == 404
        assert r.json()["error"]["message"].startswith("unknown model 'b'")
        wait_until(lambda: not _alive(pid_b), 30, "the removed model's child to stop")


NATIVE = """
max_sidecars = 3
[models.a]
path = "{gguf}"
args = ["--top-k", "{k}"]
[models.b]
path = "{gguf}"
"""


def test_native_config_files_reload_too(
    reloadable: Callable[..., tuple[ThreadDaemon, Path]],
) -> None:
    d, cfg = reloadable(NATIVE, suffix=".toml", k="5")
    with httpx.Client(base_url=d.url, timeout=30) as c:
        pid_a, pid_b = _pid(c, "a"), _pid(c, "b")
        cfg.write_text(cfg.read_text().replace('"5"', '"7"'))
        result = d.daemon.reload_threadsafe()
        assert (result.changed, result.kept) == (["a"], ["b"])
        wait_until(lambda: not _alive(pid_a), 30, "the old child of a to stop")
        assert _pid(c, "b") == pid_b
        flags = c.get("/props", params={"model": "a"}).json()["fake"]["flags"]
        assert ["--top-k", "7"] in flags


def test_watch_config_follows_a_symlink_swap_like_a_configmap(
    reloadable: Callable[..., tuple[ThreadDaemon, Path]], tmp_path: Path
) -> None:
    d, cfg = reloadable(SWAP, mark="1", extra="", watch=True)
    with httpx.Client(base_url=d.url, timeout=30) as c:
        pid_b = _pid(c, "b")
        # Kubernetes swaps a ConfigMap by repointing a symlink: the watched path's target
        # changes, not the file llamasc opened
        real = tmp_path / "v2.yaml"
        real.write_text(cfg.read_text().split("  b:")[0])
        link = tmp_path / "link.yaml"
        link.symlink_to(real)
        link.replace(cfg)
        wait_until(
            lambda: c.post("/v1/chat/completions", json={"model": "b"}).status_code == 404,
            30,
            "the watcher to reload the config",
        )
        wait_until(lambda: not _alive(pid_b), 30, "the removed model's child to stop")
        assert _pid(c, "a")
