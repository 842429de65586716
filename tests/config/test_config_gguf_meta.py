from __future__ import annotations

import os
from pathlib import Path

import pytest
from gguf import GGUFReader, LlamaFileType, PoolingType

from gguf_factory import write_gguf, write_projector
from llamasc.config.gguf_meta import GGUFError, MetaCache, file_stamp, read_gguf_meta


def test_reads_the_fields_discovery_uses(tmp_path: Path) -> None:
    p = write_gguf(
        tmp_path / "m.gguf",
        arch="qwen3",
        name="Qwen3 8B",
        size_label="8B",
        file_type=LlamaFileType.MOSTLY_Q5_K_M,
        context_length=40960,
        vocab=3000,
        tensors={"a": (8, 4), "b": (3, 5, 2)},
    )
    m = read_gguf_meta(p)
    assert m.architecture == "qwen3"
    assert m.name == "Qwen3 8B"
    assert m.size_label == "8B"
    assert m.file_type == "Q5_K_M"
    assert m.context_length == 40960
    assert m.chat_template is True
    assert m.parameters == 8 * 4 + 3 * 5 * 2
    assert m.kind == "text"
    assert m.is_model
    # the same answers as llama.cpp's own reader
    r = GGUFReader(p)
    assert r.fields["qwen3.context_length"].contents() == m.context_length
    assert sum(int(t.n_elements) for t in r.tensors) == m.parameters


def test_embedding_reranker_and_projector_kinds(tmp_path: Path) -> None:
    emb = write_gguf(tmp_path / "e.gguf", arch="bert", chat_template=None)
    last = write_gguf(tmp_path / "l.gguf", arch="qwen3", pooling=PoolingType.LAST)
    rank = write_gguf(tmp_path / "r.gguf", arch="qwen3", pooling=PoolingType.RANK)
    proj = write_projector(tmp_path / "vision.gguf")
    assert read_gguf_meta(emb).kind == "embedding"
    assert read_gguf_meta(emb).chat_template is False
    assert read_gguf_meta(last).kind == "embedding"
    assert read_gguf_meta(rank).kind == "reranker"
    assert read_gguf_meta(proj).is_projector
    assert not read_gguf_meta(proj).is_model
    adapter = write_gguf(tmp_path / "lora.gguf", general_type="adapter")
    assert not read_gguf_meta(adapter).is_model


def test_every_truncation_is_a_one_line_gguf_error(tmp_path: Path) -> None:
    whole = write_gguf(tmp_path / "m.gguf", vocab=50).read_bytes()
    header_end = whole.index(b"tok_embd.weight") + 40  # past the tensor infos
    cut = tmp_path / "cut.gguf"
    for n in range(0, header_end, 7):
        cut.write_bytes(whole[:n])
        with pytest.raises(GGUFError) as info:
            read_gguf_meta(cut)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"PK\x03\x04 not a gguf", "bad magic"),
        (b"GGUF\x09\x00\x00\x00" + bytes(16), "unsupported GGUF version 9"),
        (b"GGUF\x03\x00\x00\x00" + (2**40).to_bytes(8, "little") + bytes(8), "corrupt"),
    ],
)
def test_not_a_gguf(tmp_path: Path, data: bytes, message: str) -> None:
    p = tmp_path / "x.gguf"
    p.write_bytes(data)
    with pytest.raises(GGUFError, match=message):
        read_gguf_meta(p)


def test_cache_reads_a_file_once_until_its_size_or_mtime_changes(tmp_path: Path) -> None:
    p = write_gguf(tmp_path / "m.gguf", context_length=1000)
    cache = MetaCache()
    first = cache.get(p, file_stamp(p.stat()))
    assert cache.get(p, file_stamp(p.stat())) is first
    assert cache.reads == 1
    write_gguf(p, context_length=2000)
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = cache.get(p, file_stamp(p.stat()))
    assert cache.reads == 2
    assert not isinstance(second, str)
    assert second.context_length == 2000


def test_cache_keeps_errors_as_text(tmp_path: Path) -> None:
    p = tmp_path / "bad.gguf"
    p.write_bytes(b"nope")
    cache = MetaCache()
    assert cache.get(p, file_stamp(p.stat())) == "not a GGUF file (bad magic)"
    assert "cannot read" in str(cache.get(tmp_path / "gone.gguf", (1, 1)))


def test_a_file_cut_inside_its_tensor_data_is_truncated(tmp_path: Path) -> None:
    whole = write_gguf(tmp_path / "m.gguf", tensors={"w": (64, 64)}).read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[:-100])
    with pytest.raises(GGUFError, match="truncated GGUF"):
        read_gguf_meta(cut)
    assert read_gguf_meta(tmp_path / "m.gguf").parameters == 64 * 64
