"""Small GGUF files written with llama.cpp's ``gguf`` package: headers of text models,
projectors, split sets, embedding models, and corrupt ones, a few kilobytes each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFWriter, LlamaFileType, PoolingType


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    name: str | None = "Test Model",
    file_type: LlamaFileType | None = LlamaFileType.MOSTLY_Q4_K_M,
    context_length: int | None = 4096,
    chat_template: str | None = "{{ messages }}",
    pooling: PoolingType | None = None,
    general_type: str | None = None,
    split: tuple[int, int] | None = None,
    tensors: dict[str, tuple[int, ...]] | None = None,
    vocab: int = 0,
    size_label: str | None = None,
) -> Path:
    """Write a GGUF header (and tiny F32 tensors) to ``path``; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(str(path), arch)
    if name:
        w.add_name(name)
    if general_type:
        w.add_type(general_type)
    if size_label:
        w.add_size_label(size_label)
    if file_type is not None:
        w.add_file_type(int(file_type))
    if context_length is not None:
        w.add_context_length(context_length)
    if pooling is not None:
        w.add_pooling_type(pooling)
    if vocab:
        w.add_token_list([f"tok{i}" for i in range(vocab)])
        w.add_token_scores([0.0] * vocab)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    if split is not None:
        w.add_uint16("split.no", split[0] - 1)
        w.add_uint16("split.count", split[1])
    for tname, shape in (tensors if tensors is not None else {"tok_embd.weight": (8, 4)}).items():
        w.add_tensor(tname, np.zeros(shape, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_projector(path: Path, file_type: LlamaFileType = LlamaFileType.MOSTLY_F16) -> Path:
    return write_gguf(
        path, arch="clip", name="projector", file_type=file_type, context_length=None,
        chat_template=None, general_type="mmproj",
    )  # fmt: skip


def write_split(directory: Path, prefix: str, count: int) -> list[Path]:
    """A split model ``prefix-0000N-of-0000M.gguf``: every part holds one tensor of 32."""
    paths = []
    for no in range(1, count + 1):
        p = directory / f"{prefix}-{no:05d}-of-{count:05d}.gguf"
        write_gguf(p, split=(no, count), tensors={f"blk.{no}.weight": (8, 4)})
        paths.append(p)
    return paths


__all__ = ["write_gguf", "write_projector", "write_split"]
