"""Model discovery in a running daemon (real Pool, fake llama-server children): metadata in
/v1/models, operator defaults from the GGUF, rescans adding, removing and changing models."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from gguf import LlamaFileType
from server_fakes import DaemonFactory, ThreadDaemon, chat, wait_until

from gguf_factory import write_gguf, write_projector


def _run(argv: list[str]) -> None:
    """``llamasc ARGV`` in-process; it must exit 0."""
    from llamasc.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0


SLOW = {"FAKE_LLAMA_TOKEN_DELAY": "0.05", "FAKE_LLAMA_CHUNKS": "40"}


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "gguf"
    write_gguf(root / "alpha" / "Alpha-Q4_0.gguf", file_type=LlamaFileType.MOSTLY_Q4_0)
    write_projector(root / "alpha" / "mmproj-F16.gguf")
    write_gguf(root / "Short-Q8_0.gguf", context_length=256)
    write_gguf(root / "Embed-F16.gguf", arch="bert", chat_template=None, context_length=512)
    return root


def _start(daemon_factory: DaemonFactory, models: Path, **cli: Any) -> ThreadDaemon:
    file_data = {"models": {"alpha:q4_0": {"env": SLOW}}}
    return daemon_factory(file_data, models_dirs=[str(models)], **cli)


def _models(d: ThreadDaemon) -> dict[str, dict[str, Any]]:
    data = httpx.get(d.url + "/v1/models", timeout=10).json()["data"]
    return {m["id"]: m for m in data}


def _reload(d: ThreadDaemon) -> dict[str, Any]:
    r = httpx.post(d.url + "/models", params={"reload": "1"}, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _sidecar_of(d: ThreadDaemon, model: str) -> dict[str, Any] | None:
    return next((s for s in d.sidecars() if s["model"] == model), None)


def _bump_mtime(p: Path) -> None:
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def test_models_show_their_gguf_metadata(daemon_factory: DaemonFactory, models: Path) -> None:
    d = _start(daemon_factory, models)
    listed = _models(d)
    assert {"alpha:q4_0", "short:q8_0", "embed:f16", "m1", "m2"} <= set(listed)
    meta = listed["alpha:q4_0"]["meta"]
    assert meta["architecture"] == "llama"
    assert meta["quantization"] == "Q4_0"
    assert meta["context_length"] == 4096
    assert meta["chat_template"] is True
    assert meta["vision"] is True
    assert meta["type"] == "text"
    assert meta["source"] == "models_dir"
    assert listed["embed:f16"]["meta"]["type"] == "embedding"
    assert "mmproj" not in json.dumps(listed)  # no local paths for clients


def test_discovered_models_get_operator_defaults(
    daemon_factory: DaemonFactory, models: Path
) -> None:
    d = _start(daemon_factory, models)
    r = httpx.post(d.url + "/v1/chat/completions", json=chat("alpha:q4_0"), timeout=30)
    assert r.status_code == 200, r.text
    argv = r.json()["fake"]["argv"]
    assert argv[argv.index("--mmproj") + 1] == str(models / "alpha" / "mmproj-F16.gguf")
    assert argv[argv.index("--ctx-size") + 1] == "512"  # the base's 512 fits its 4096
    r = httpx.post(d.url + "/v1/chat/completions", json=chat("short:q8_0"), timeout=30)
    argv = r.json()["fake"]["argv"]
    assert argv[argv.index("--ctx-size") + 1] == "256"  # capped at the trained length
    r = httpx.post(
        d.url + "/v1/embeddings", json={"model": "embed:f16", "input": "hello"}, timeout=30
    )
    assert r.status_code == 200, r.text  # the fake answers 501 without --embedding
    # the client's own -c still wins over the trained-length cap (within the operator's
    # per-request cap, the base's 512)
    r = httpx.post(
        d.url + "/v1/chat/completions",
        json=chat("short:q8_0"),
        headers={"X-Agent-Flags": "-c 384"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    argv = r.json()["fake"]["argv"]
    assert argv[argv.index("--ctx-size") + 1] == "384"


def test_rescan_adds_models_and_lists_bad_files(
    daemon_factory: DaemonFactory, models: Path
) -> None:
    d = _start(daemon_factory, models)
    write_gguf(models / "new" / "Beta-Q8_0.gguf")
    (models / "new" / "junk.gguf").write_text("not a model")
    report = _reload(d)
    assert report["added"] == ["beta:q8_0"]
    assert report["removed"] == []
    assert [b["error"] for b in report["bad"]] == ["not a GGUF file (bad magic)"]
    assert "beta:q8_0" in _models(d)
    assert "junk" not in json.dumps(_models(d))
    r = httpx.post(d.url + "/v1/chat/completions", json=chat("beta:q8_0"), timeout=30)
    assert r.status_code == 200, r.text
    again = _reload(d)
    assert (again["added"], again["removed"], again["changed"]) == ([], [], [])


def test_removed_model_finishes_its_request_in_flight_then_stops(
    daemon_factory: DaemonFactory, models: Path
) -> None:
    d = _start(daemon_factory, models)
    result: dict[str, Any] = {}

    def stream() -> None:
        with httpx.stream(
            "POST",
            d.url + "/v1/chat/completions",
            json=chat("alpha:q4_0", stream=True),
            timeout=60,
        ) as r:
            result["status"] = r.status_code
            result["body"] = r.read().decode()

    t = threading.Thread(target=stream)
    t.start()
    wait_until(
        lambda: (s := _sidecar_of(d, "alpha:q4_0")) is not None and s["in_flight"] == 1,
        30,
        "the stream to be in flight",
    )
    (models / "alpha" / "Alpha-Q4_0.gguf").unlink()
    report = _reload(d)
    assert report["removed"] == ["alpha:q4_0"]
    assert len(report["retired"]) == 1
    assert _sidecar_of(d, "alpha:q4_0") is not None  # still serving the stream
    t.join(60)
    assert result["status"] == 200
    assert result["body"].rstrip().endswith("data: [DONE]")
    wait_until(lambda: _sidecar_of(d, "alpha:q4_0") is None, 30, "the sidecar to stop")
    r = httpx.post(d.url + "/v1/chat/completions", json=chat("alpha:q4_0"), timeout=30)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


def test_changed_file_restarts_its_sidecar_when_idle(
    daemon_factory: DaemonFactory, models: Path
) -> None:
    d = _start(daemon_factory, models)
    first = httpx.post(d.url + "/v1/chat/completions", json=chat("short:q8_0"), timeout=30)
    pid = first.json()["fake"]["pid"]
    p = models / "Short-Q8_0.gguf"
    write_gguf(p, context_length=128)
    _bump_mtime(p)
    report = _reload(d)
    assert report["changed"] == ["short:q8_0"]
    wait_until(lambda: _sidecar_of(d, "short:q8_0") is None, 30, "the old sidecar to stop")
    again = httpx.post(d.url + "/v1/chat/completions", json=chat("short:q8_0"), timeout=30)
    assert again.json()["fake"]["pid"] != pid
    argv = again.json()["fake"]["argv"]
    assert argv[argv.index("--ctx-size") + 1] == "128"  # the new header's trained length


def test_watch_models_picks_up_a_new_file(daemon_factory: DaemonFactory, models: Path) -> None:
    d = _start(daemon_factory, models, watch_models=True, watch_interval="0.2")
    write_gguf(models / "Gamma-Q4_0.gguf")
    wait_until(lambda: "gamma:q4_0" in _models(d), 30, "the watcher to find the file")
    (models / "Gamma-Q4_0.gguf").unlink()
    wait_until(lambda: "gamma:q4_0" not in _models(d), 30, "the watcher to drop the file")


def test_post_models_without_reload_is_a_400_envelope(
    daemon_factory: DaemonFactory, models: Path
) -> None:
    d = _start(daemon_factory, models)
    r = httpx.post(d.url + "/models", timeout=10)
    assert r.status_code == 400
    assert "reload=1" in r.json()["error"]["message"]
    listed = httpx.get(d.url + "/models", params={"reload": "1"}, timeout=10)
    assert listed.status_code == 200


def test_llamasc_models_reload_asks_the_running_daemon(
    daemon_factory: DaemonFactory, models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _start(daemon_factory, models)
    write_gguf(models / "Later-Q8_0.gguf")
    _run(["models", "--reload", "--json", "--daemon", d.url])
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == ["later:q8_0"]
