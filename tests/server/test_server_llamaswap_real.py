"""`llamasc serve --config config.yaml` with a llama-swap config over the real llama-server
and the real SmolLM2 and Gemma GGUFs, driven through llama-swap's routes."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fakes import ThreadDaemon, free_port_range, wait_until

from llamasc.config.settings import load_settings

pytestmark = pytest.mark.real

CONFIG = """
healthCheckTimeout: 60
logLevel: info
globalTTL: 0
includeAliasesInList: false
logToStdout: both          # not acted on: a warning
apiKeys: ["sk-first", "${env.SECOND_KEY}"]
macros:
  "server": "${env.LLAMA_BIN}"
  "small": "-c 512 -np 1 -t 2"
models:
  "smol":
    name: "SmolLM2 135M"
    description: "the demo model"
    metadata: {family: smollm, ctx: 512}
    cmd: |
      # SmolLM2, tiny context
      ${server} --port ${PORT} \\
        -m ${env.SMOL} \\
        ${small} --top-k 1
    aliases: [small, tiny]
    ttl: 300
    filters:
      setParams: {max_tokens: 2}
  "gemma":
    cmd: ${server} -m "${env.GEMMA}" --port ${PORT} ${small} --alias ignored
    unlisted: true
groups:
  "chat":
    swap: true
    members: [smol, gemma]
hooks:
  on_startup:
    preload: [smol]
"""

KEY = {"Authorization": "Bearer sk-first"}


@pytest.fixture
def swap_daemon(
    tmp_path: Path,
    llama_server_bin: Path,
    smollm2_path: Path,
    gemma_path: Path,
    isolated_env: Path,
) -> Iterator[ThreadDaemon]:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    env = {
        "LLAMA_BIN": str(llama_server_bin),
        "SMOL": str(smollm2_path),
        "GEMMA": str(gemma_path),
        "SECOND_KEY": "sk-second",
    }
    lo, hi = free_port_range()
    cli: dict[str, Any] = {
        "llama_server_bin": str(llama_server_bin),
        "bind": "127.0.0.1:0",
        "port_range": f"{lo}-{hi}",
        "base_args": "[]",
        "home": str(tmp_path / "home"),
    }
    d = ThreadDaemon(load_settings(cli, env=env, config_path=cfg))
    yield d
    if d.thread.is_alive():
        d.stop()


def _chat(model: str, max_tokens: int = 8) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Count to twenty."}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


def test_llama_swap_config_serves_through_its_routes(swap_daemon: ThreadDaemon) -> None:
    with httpx.Client(base_url=swap_daemon.url, timeout=120) as c:
        # apiKeys: none, a wrong one -> 401; Bearer and Basic (password field) work
        assert c.get("/v1/models").status_code == 401
        bad = c.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        assert bad.json()["error"]["type"]
        basic = base64.b64encode(b"anyone:sk-second").decode()
        listing = c.get("/v1/models", headers={"Authorization": f"Basic {basic}"})
        assert listing.status_code == 200
        entries = {e["id"]: e for e in listing.json()["data"]}
        assert set(entries) == {"smol"}  # gemma is unlisted, aliases are not listed
        assert entries["smol"]["name"] == "SmolLM2 135M"
        # llama-swap's metadata beside what the GGUF itself says (model discovery)
        assert entries["smol"]["meta"]["llamaswap"] == {"family": "smollm", "ctx": 512}
        assert entries["smol"]["meta"]["architecture"] == "llama"

        # hooks.on_startup.preload started smol before any request
        wait_until(
            lambda: (
                [x["model"] for x in c.get("/running", headers=KEY).json()["running"]] == ["smol"]
            ),
            60,
            "the preloaded model",
        )
        # an alias reaches the model; setParams forces max_tokens=2 over the request's 8
        r = c.post("/v1/chat/completions", json=_chat("small"), headers=KEY)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] <= 2
        running = c.get("/running", headers=KEY).json()["running"]
        assert [x["model"] for x in running] == ["smol"]
        (sidecar,) = c.get("/sidecars", headers=KEY).json()["sidecars"]
        assert running[0]["proxy"] == f"http://127.0.0.1:{sidecar['port']}"
        assert "--top-k 1" in running[0]["cmd"]
        # the cmd's own arguments are the model's operator args; --port is llamasc's
        assert sidecar["flags"][sidecar["flags"].index("--top-k") + 1] == "1"
        assert sidecar["flags"][sidecar["flags"].index("--ctx-size") + 1] == "512"
        assert "--port" not in sidecar["flags"]

        # the unlisted model is still routable; its own --alias was dropped for ours
        r = c.post("/v1/chat/completions", json=_chat("gemma", 3), headers=KEY)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] >= 1
        assert {x["model"] for x in c.get("/running", headers=KEY).json()["running"]} >= {"gemma"}

        logs = c.get("/logs", headers=KEY)
        assert logs.status_code == 200
        assert logs.headers["content-type"].startswith("text/plain")
        assert "[gemma]" in logs.text

        # unload one model by alias, then everything
        r = c.post("/api/models/unload/tiny", headers=KEY)
        assert r.status_code == 200, r.text
        assert r.json()["model"] == "smol"
        assert all(x["model"] != "smol" for x in c.get("/running", headers=KEY).json()["running"])
        assert c.post("/api/models/unload/ghost", headers=KEY).status_code == 404
        assert c.post("/unload", headers=KEY).text == "OK"
        wait_until(
            lambda: c.get("/running", headers=KEY).json()["running"] == [],
            30,
            "every model unloaded",
        )
