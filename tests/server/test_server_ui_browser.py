"""The dashboard in a real browser: headless Chromium against a real daemon with SmolLM2.

The page must load without console errors, show the sidecar a request started, update its
state live when the sidecar is stopped from the page, and leave a screenshot behind
(``test-artifacts/ui-dashboard.png``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cdp import Page, chromium_page, find_chromium
from server_fakes import ThreadDaemon, free_port_range, wait_until

from llamasc.config.settings import settings_from_sources

pytestmark = pytest.mark.real


@pytest.fixture
def smol_daemon(
    tmp_path: Path, llama_server_bin: Path, smollm2_path: Path, isolated_env: Path
) -> Iterator[ThreadDaemon]:
    model_map = tmp_path / "models.json"
    model_map.write_text(json.dumps({"smol": str(smollm2_path)}))
    lo, hi = free_port_range()
    settings = settings_from_sources(
        env={},
        cli={
            "llama_server_bin": str(llama_server_bin),
            "model_map_file": str(model_map),
            "bind": "127.0.0.1:0",
            "port_range": f"{lo}-{hi}",
            "base_args": '["-c", "512", "-np", "1", "-t", "2"]',
            "home": str(tmp_path / "home"),
            "health_timeout": "120",
            "api_key": "browser-key",
        },
    )
    d = ThreadDaemon(settings)
    yield d
    if d.thread.is_alive():
        d.stop()


def _wait_js(page: Page, expression: str, timeout: float, what: str) -> object:
    return wait_until(lambda: page.js(expression), timeout, what, interval=0.1)


def test_dashboard_shows_and_stops_a_sidecar_live(
    smol_daemon: ThreadDaemon, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    chromium = find_chromium()
    assert chromium, "chromium is not installed (nox -s tests installs Debian's chromium)"
    url = smol_daemon.url
    auth = {"Authorization": "Bearer browser-key"}
    with chromium_page(chromium, tmp_path / "profile") as page:
        # The key is entered once in the page's form and kept in session storage.
        page.send("Page.navigate", url=url + "/ui/")
        _wait_js(page, "document.readyState === 'complete'", 30, "the page to load")
        _wait_js(page, "!document.getElementById('keyform').hidden", 30, "the key form")
        page.js(
            "document.getElementById('key').value = 'browser-key';"
            "document.getElementById('keyform').requestSubmit(); true"
        )
        _wait_js(page, "document.getElementById('conn').textContent === 'live'", 30, "live")
        assert page.js("sessionStorage.getItem('llamasc-api-key')") == "browser-key"
        assert page.js("document.querySelectorAll('tr.sidecar').length") == 0

        body = {
            "model": "smol",
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 4,
        }
        resp = httpx.post(url + "/v1/chat/completions", json=body, headers=auth, timeout=120)
        assert resp.status_code == 200
        hash_ = httpx.get(url + "/sidecars", headers=auth).json()["sidecars"][0]["hash"]
        row = f"document.querySelector('tr.sidecar[data-hash=\"{hash_}\"]')"
        _wait_js(page, f"{row} && {row}.querySelector('.state').textContent === 'ready'", 30,
                 "the sidecar row")  # fmt: skip
        assert page.js(f"{row}.querySelector('.model').textContent") == "smol"
        _wait_js(page, "document.querySelectorAll('#activity tbody tr').length >= 1", 30,
                 "the request in the history")  # fmt: skip
        page.screenshot(pytestconfig.rootpath / "test-artifacts" / "ui-dashboard.png")

        # Stop it from the page: the row turns to stopping, then goes, without a reload.
        seen: list[str] = []
        page.js(f"{row}.querySelector('button.stop').click(); true")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = page.js(f"{row} ? {row}.querySelector('.state').textContent : 'gone'")
            if not seen or seen[-1] != state:
                seen.append(state)
            if state == "gone":
                break
            time.sleep(0.05)
        assert seen[-1] == "gone", seen
        assert "ready" not in seen[1:], seen
        assert httpx.get(url + "/sidecars", headers=auth).json()["sidecars"] == []
        _wait_js(page, "!document.getElementById('no-sidecars').hidden", 10, "the empty note")
        page.screenshot(pytestconfig.rootpath / "test-artifacts" / "ui-dashboard-stopped.png")
        assert page.errors() == []
