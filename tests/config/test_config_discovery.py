from __future__ import annotations

import os
from pathlib import Path

import pytest
from gguf import LlamaFileType, PoolingType

from gguf_factory import write_gguf, write_projector, write_split
from llamasc.config.discovery import Scanner

BF16, F16, F32 = LlamaFileType.MOSTLY_BF16, LlamaFileType.MOSTLY_F16, LlamaFileType.ALL_F32


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A models folder as users keep them: nested vendor folders, a projector beside its
    model, a split set, an embedding model, a draft, and two broken files."""
    root = tmp_path / "models"
    vl = root / "unsloth" / "Qwen3-VL-32B-Instruct-GGUF"
    write_gguf(vl / "Qwen3-VL-32B-Instruct-Q4_K_M.gguf", arch="qwen3vl")
    write_gguf(vl / "Qwen3-VL-32B-Instruct-Q8_0.gguf", arch="qwen3vl")
    write_projector(vl / "mmproj-F16.gguf", F16)
    write_projector(vl / "mmproj-BF16.gguf", BF16)
    write_split(root / "big", "Big-Model-Q8_0", 3)
    write_gguf(
        root / "embed" / "nomic-embed-text-v1.5.f16.gguf",
        arch="nomic-bert", pooling=PoolingType.MEAN, file_type=F16, chat_template=None,
    )  # fmt: skip
    write_gguf(root / "SmolLM2-135M-Instruct.Q4_1.gguf", file_type=LlamaFileType.MOSTLY_Q4_1)
    write_gguf(root / "mtp-Qwen3-Q8_0.gguf")
    (root / "broken").mkdir()
    (root / "broken" / "half-Q4_0.gguf").write_bytes(
        write_gguf(tmp_path / "whole.gguf", tensors={"w": (64, 64)}).read_bytes()[:-500]
    )
    (root / "broken" / "readme.gguf").write_text("not a model")
    (root / ".hidden").mkdir()
    write_gguf(root / ".hidden" / "secret-Q4_0.gguf")
    return root


def test_recursive_import_lists_each_model_once_with_readable_ids(tree: Path) -> None:
    result = Scanner().scan([tree])
    ids = {e.id: e for e in result.entries}
    assert sorted(ids) == [
        "big-model:q8_0",
        "nomic-embed-text-v1.5:f16",
        "qwen3-vl-32b-instruct:q4_k_m",
        "qwen3-vl-32b-instruct:q8_0",
        "smollm2-135m-instruct:q4_1",
    ]
    big = ids["big-model:q8_0"]
    assert big.path.name == "Big-Model-Q8_0-00001-of-00003.gguf"
    assert big.parts == 3
    assert big.meta is not None
    assert big.meta.parameters == 3 * 32  # every part's tensors
    assert ids["nomic-embed-text-v1.5:f16"].meta.kind == "embedding"  # type: ignore[union-attr]
    assert ids["smollm2-135m-instruct:q4_1"].source == "models_dir"


def test_projectors_drafts_and_split_parts_are_not_models(tree: Path) -> None:
    result = Scanner().scan([tree])
    skipped = {s.path.name: s.reason for s in result.skipped}
    assert skipped["mmproj-BF16.gguf"] == "vision projector"
    assert skipped["mmproj-F16.gguf"] == "vision projector"
    assert skipped["mtp-Qwen3-Q8_0.gguf"].startswith("draft")
    assert skipped["Big-Model-Q8_0-00002-of-00003.gguf"] == "part 2 of 3 of a split model"
    assert skipped["Big-Model-Q8_0-00003-of-00003.gguf"] == "part 3 of 3 of a split model"
    assert all("secret" not in str(e.path) for e in result.entries)


def test_bad_files_are_listed_with_their_error_and_never_served(tree: Path) -> None:
    result = Scanner().scan([tree])
    bad = {b.path.name: b.error for b in result.bad}
    assert set(bad) == {"half-Q4_0.gguf", "readme.gguf"}
    assert bad["half-Q4_0.gguf"].startswith("truncated GGUF")
    assert bad["readme.gguf"] == "not a GGUF file (bad magic)"
    assert not {e.path.name for e in result.entries} & set(bad)


def test_the_folders_projector_goes_with_every_model_of_that_folder(tree: Path) -> None:
    result = Scanner().scan([tree])
    by_id = {e.id: e for e in result.entries}
    for mid in ("qwen3-vl-32b-instruct:q4_k_m", "qwen3-vl-32b-instruct:q8_0"):
        mmproj = by_id[mid].mmproj
        assert mmproj is not None
        assert mmproj.name == "mmproj-BF16.gguf"
    assert by_id["big-model:q8_0"].mmproj is None
    off = Scanner().scan([tree], mmproj_auto=False)
    assert all(e.mmproj is None for e in off.entries)


@pytest.mark.parametrize(
    "present",
    [("F32",), ("F16", "F32"), ("BF16", "F32"), ("BF16", "F16"), ("BF16", "F16", "F32")],
)
def test_projector_pairing_on_disk_prefers_bf16_f16_f32(
    tmp_path: Path, present: tuple[str, ...]
) -> None:
    types = {"BF16": BF16, "F16": F16, "F32": F32}
    write_gguf(tmp_path / "m" / "Vision-Q4_K_M.gguf")
    for tag in present:  # named without a tag: the metadata's file type decides
        write_projector(tmp_path / "m" / f"mmproj-{tag.lower()}-x.gguf", types[tag])
    (entry,) = Scanner().scan([tmp_path / "m"]).entries
    expected = min(present, key=["BF16", "F16", "F32"].index)
    assert entry.mmproj == tmp_path / "m" / f"mmproj-{expected.lower()}-x.gguf"


def test_a_projector_recognised_by_its_header_alone(tmp_path: Path) -> None:
    write_gguf(tmp_path / "Model-Q4_0.gguf")
    write_projector(tmp_path / "vision-encoder.gguf")
    write_gguf(tmp_path / "style-lora.gguf", general_type="adapter")
    result = Scanner().scan([tmp_path])
    assert [e.id for e in result.entries] == ["model:q4_0"]
    assert result.entries[0].mmproj == tmp_path / "vision-encoder.gguf"
    assert {s.path.name for s in result.skipped} == {"vision-encoder.gguf", "style-lora.gguf"}


def test_a_split_set_missing_a_part_is_a_bad_file(tmp_path: Path) -> None:
    parts = write_split(tmp_path, "Huge-Q4_K_M", 3)
    parts[1].unlink()
    result = Scanner().scan([tmp_path])
    assert result.entries == []
    assert [(b.path, b.error) for b in result.bad] == [
        (parts[0], "split model missing part(s) 00002 of 00003")
    ]


def test_id_collisions_are_tie_broken_by_folder_with_a_warning(tmp_path: Path) -> None:
    write_gguf(tmp_path / "a" / "llama-Q4_0.gguf")
    write_gguf(tmp_path / "b" / "deep" / "llama-Q4_0.gguf")
    write_gguf(tmp_path / "llama.gguf", file_type=LlamaFileType.MOSTLY_Q4_0)
    result = Scanner().scan([tmp_path])
    assert {e.id for e in result.entries} == {
        f"{tmp_path.name}/llama:q4_0",
        "a/llama:q4_0",
        "b/deep/llama:q4_0",
    }
    assert len(result.warnings) == 1
    assert "'llama:q4_0' would name 3 files" in result.warnings[0]


def test_several_folders_and_the_same_name_in_two_of_them(tmp_path: Path) -> None:
    write_gguf(tmp_path / "one" / "m-Q4_0.gguf")
    write_gguf(tmp_path / "two" / "m-Q4_0.gguf")
    write_gguf(tmp_path / "two" / "other-Q8_0.gguf")
    result = Scanner().scan([tmp_path / "one", tmp_path / "two"])
    assert [e.id for e in result.entries] == ["one/m:q4_0", "two/m:q4_0", "other:q8_0"]
    assert len({e.id for e in result.entries}) == 3


def test_a_missing_folder_is_a_bad_entry_not_a_crash(tmp_path: Path) -> None:
    result = Scanner().scan([tmp_path / "gone"])
    assert [b.error for b in result.bad] == ["models directory not found"]


def test_rescan_of_unchanged_files_reads_no_header(tree: Path) -> None:
    scanner = Scanner()
    first = scanner.scan([tree])
    reads = scanner.cache.reads
    again = scanner.scan([tree])
    assert scanner.cache.reads == reads
    assert again.entries == first.entries


def test_a_changed_file_gets_a_new_stamp(tree: Path) -> None:
    scanner = Scanner()
    before = {e.id: e for e in scanner.scan([tree]).entries}
    p = tree / "SmolLM2-135M-Instruct.Q4_1.gguf"
    write_gguf(p, context_length=8192, tensors={"w": (16, 4)})
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    after = {e.id: e for e in scanner.scan([tree]).entries}
    mid = "smollm2-135m-instruct:q4_1"
    assert after[mid] != before[mid]
    assert after[mid].meta is not None
    assert after[mid].meta.context_length == 8192
    others = [i for i in after if i != mid]
    assert all(after[i] == before[i] for i in others)


def test_symlinked_folders_are_followed_once(tmp_path: Path) -> None:
    write_gguf(tmp_path / "real" / "m-Q4_0.gguf")
    (tmp_path / "real" / "loop").symlink_to(tmp_path / "real")
    result = Scanner().scan([tmp_path])
    assert [e.id for e in result.entries] == ["m:q4_0"]
