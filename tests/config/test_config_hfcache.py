from __future__ import annotations

from pathlib import Path

import pytest
from gguf import LlamaFileType

from gguf_factory import write_gguf, write_projector, write_split
from llamasc.config.discovery import Scanner
from llamasc.config.hfcache import cache_dirs, hub_cache_dir, llama_cache_dir

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OLD = "fedcba9876543210fedcba9876543210fedcba98"


def _cached(hub: Path, repo: str, files: dict[str, Path | None], commit: str = COMMIT) -> Path:
    """A repository in the hub layout: blobs, a snapshot of symlinks, refs/main."""
    owner, name = repo.split("/")
    base = hub / f"models--{owner}--{name}"
    snap = base / "snapshots" / commit
    (base / "blobs").mkdir(parents=True, exist_ok=True)
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / "main").write_text(commit)
    for rel, src in files.items():
        blob = base / "blobs" / f"blob{abs(hash(rel))}"
        if src is None:
            write_gguf(blob)
        else:
            blob.write_bytes(src.read_bytes())
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    return snap


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    hub = tmp_path / "hf" / "hub"
    proj = write_projector(tmp_path / "p.gguf", LlamaFileType.MOSTLY_F16)
    parts = write_split(tmp_path / "parts", "Big-Q4_K_M", 2)
    _cached(
        hub,
        "unsloth/Qwen3-VL-8B-Instruct-GGUF",
        {"Qwen3-VL-8B-Instruct-Q4_K_M.gguf": None, "mmproj-F16.gguf": proj},
    )
    _cached(
        hub,
        "bartowski/Big-GGUF",
        {f"Q4_K_M/{p.name}": p for p in parts} | {"Big-Q8_0.gguf": None},
    )
    return hub


def test_hub_cache_location_follows_huggingface_hub(tmp_path: Path) -> None:
    assert hub_cache_dir({"HF_HUB_CACHE": "/a", "HF_HOME": "/b"}) == Path("/a")
    assert hub_cache_dir({"HF_HOME": "/b"}) == Path("/b/hub")
    assert hub_cache_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/huggingface/hub")
    assert hub_cache_dir({}) == Path.home() / ".cache" / "huggingface" / "hub"
    assert llama_cache_dir({"LLAMA_CACHE": "/l"}) == Path("/l")
    assert llama_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) is None  # absent: not used
    (tmp_path / "llama.cpp").mkdir()
    assert llama_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "llama.cpp"


def test_hf_cache_models_get_router_ids_and_their_projector(hub: Path) -> None:
    result = Scanner().scan(hf_cache=True, env={"HF_HUB_CACHE": str(hub)})
    by_id = {e.id: e for e in result.entries}
    assert sorted(by_id) == [
        "bartowski/Big-GGUF:Q4_K_M",
        "bartowski/Big-GGUF:Q8_0",
        "unsloth/Qwen3-VL-8B-Instruct-GGUF:Q4_K_M",
    ]
    vl = by_id["unsloth/Qwen3-VL-8B-Instruct-GGUF:Q4_K_M"]
    assert vl.mmproj is not None
    assert vl.mmproj.name == "mmproj-F16.gguf"
    assert vl.source == "hf_cache"
    big = by_id["bartowski/Big-GGUF:Q4_K_M"]
    assert big.parts == 2
    assert big.path.name == "Big-Q4_K_M-00001-of-00002.gguf"
    assert "snapshots" in big.path.parts  # llama-server finds the other parts beside it


def test_hf_cache_reads_the_snapshot_refs_main_names(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    _cached(hub, "o/r", {"old-Q4_0.gguf": None}, commit=OLD)
    _cached(hub, "o/r", {"new-Q8_0.gguf": None}, commit=COMMIT)  # refs/main -> COMMIT
    result = Scanner().scan(hf_cache=True, env={"HF_HUB_CACHE": str(hub)})
    assert [e.id for e in result.entries] == ["o/r:Q8_0"]


def test_llama_cache_flat_files_and_hub_layout(tmp_path: Path) -> None:
    lc = tmp_path / "llama-cache"
    write_gguf(lc / "ggml-org_gemma-3-270m-GGUF_gemma-3-270m-Q8_0.gguf")
    _cached(lc, "ggml-org/tiny-GGUF", {"tiny-Q4_0.gguf": None})
    env = {"HF_HUB_CACHE": str(tmp_path / "none"), "LLAMA_CACHE": str(lc)}
    assert cache_dirs(env) == [lc]
    ids = sorted(e.id for e in Scanner().scan(hf_cache=True, env=env).entries)
    assert ids == ["ggml-org/tiny-GGUF:Q4_0", "ggml-org_gemma-3-270m-gguf_gemma-3-270m:q8_0"]


def test_the_same_quant_twice_in_one_repo_is_tie_broken(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    _cached(hub, "o/r", {"a/m-Q4_0.gguf": None, "b/m-Q4_0.gguf": None})
    result = Scanner().scan(hf_cache=True, env={"HF_HUB_CACHE": str(hub)})
    assert sorted(e.id for e in result.entries) == ["o/r:Q4_0@a/m-Q4_0", "o/r:Q4_0@b/m-Q4_0"]
    assert result.warnings
