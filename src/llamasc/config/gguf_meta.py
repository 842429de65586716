"""What a GGUF says about itself: its header and key-values, never its tensors.

llama.cpp's ``gguf`` package gives the format's constants (magic, value types, key names,
file and tensor types). Its ``GGUFReader`` maps the whole file and builds numpy views of every
array element (150k for a tokenizer's vocabulary), which costs far more than a header read,
so the few fields llamasc needs are read here with a small buffered reader that skips what it
does not need: numeric arrays by seeking, string arrays by walking their lengths in memory.

Results are cached by (path, size, mtime): a rescan of unchanged files reads nothing.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
_BIG_CHUNK = 1 << 20
_MAX_KEY = 1 << 16
_MAX_STRING = 1 << 26  # a chat template is kilobytes; 64 MiB means a corrupt length
_MAX_ARRAY = 1 << 28
_MAX_KV = 1 << 20
_MAX_TENSORS = 1 << 22
_MAX_DIMS = 8

# Encoder architectures llama.cpp serves as embedding models (their causal LMs never are).
_EMBEDDING_ARCHES = frozenset(
    {
        "bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "neo-bert",
        "modern-bert", "t5encoder", "gemma-embedding", "eurobert",
    }
)  # fmt: skip
_NOT_MODEL_TYPES = frozenset({"mmproj", "adapter", "imatrix"})
_PROJECTOR_ARCHES = frozenset({"clip"})


class GGUFError(ValueError):
    """The file is not a readable GGUF (why, in one line)."""


@dataclass(frozen=True)
class GGUFMeta:
    """The fields of one GGUF that discovery, ``/v1/models`` and routing use."""

    version: int
    architecture: str | None = None
    general_type: str | None = None  # "model", "mmproj", "adapter", ... (newer files)
    name: str | None = None
    size_label: str | None = None
    file_type: str | None = None  # "Q4_K_M", "F16", ... from general.file_type
    context_length: int | None = None
    chat_template: bool = False
    pooling: str | None = None  # "mean", "cls", "last", "rank" when the metadata says
    parameters: int | None = None  # counted from the tensor shapes of this file
    tensors: int = 0
    split_no: int | None = None
    split_count: int | None = None

    @property
    def is_projector(self) -> bool:
        return self.general_type == "mmproj" or self.architecture in _PROJECTOR_ARCHES

    @property
    def is_model(self) -> bool:
        """A file llama-server can load with ``-m`` (not a projector, adapter or imatrix)."""
        return not self.is_projector and self.general_type not in _NOT_MODEL_TYPES

    @property
    def kind(self) -> str:
        """``"reranker"``, ``"embedding"`` or ``"text"``, as far as the metadata says."""
        if self.pooling == "rank":
            return "reranker"
        if self.pooling in ("mean", "cls", "last") or self.architecture in _EMBEDDING_ARCHES:
            return "embedding"
        return "text"


class _Reader:
    """Little-endian reads over a file through one growing in-memory window."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.size = os.fstat(f.fileno()).st_size
        self.buf = b""
        self.pos = 0

    def _need(self, n: int, chunk: int = _CHUNK) -> None:
        have = len(self.buf) - self.pos
        if have >= n:
            return
        more = self.f.read(max(n - have, chunk))
        self.buf = self.buf[self.pos :] + more
        self.pos = 0
        if len(self.buf) < n:
            raise GGUFError("truncated GGUF (the file ends inside its header)")

    def unpack(self, fmt: struct.Struct) -> Any:
        self._need(fmt.size)
        (value,) = fmt.unpack_from(self.buf, self.pos)
        self.pos += fmt.size
        return value

    def string(self, limit: int = _MAX_STRING) -> str:
        n = self.unpack(_U64)
        if n > limit:
            raise GGUFError(f"corrupt GGUF (a string of {n} bytes)")
        self._need(n)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", "replace")

    def skip(self, n: int) -> None:
        have = len(self.buf) - self.pos
        if n <= have:
            self.pos += n
            return
        if self.f.seek(n - have, os.SEEK_CUR) > self.size:
            raise GGUFError("truncated GGUF (the file ends inside its header)")
        self.buf, self.pos = b"", 0

    def skip_strings(self, count: int) -> None:
        """Skip ``count`` length-prefixed strings (a tokenizer vocabulary) in big reads."""
        unpack = _U64.unpack_from
        while count:
            buf, pos, end = self.buf, self.pos, len(self.buf)
            while count and pos + 8 <= end:  # the hot loop: whole strings in the window
                (n,) = unpack(buf, pos)
                if n > _MAX_STRING or pos + 8 + n > end:
                    break
                pos += 8 + n
                count -= 1
            self.pos = pos
            if count:  # a string across the window's end (or a corrupt length)
                self._need(8, _BIG_CHUNK)
                (n,) = unpack(self.buf, self.pos)
                if n > _MAX_STRING:
                    raise GGUFError(f"corrupt GGUF (a string of {n} bytes)")
                self.pos += 8
                self.skip(n)
                count -= 1


_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def _scalar_formats() -> dict[int, struct.Struct]:
    from gguf import GGUFValueType as T

    return {
        T.UINT8: struct.Struct("<B"), T.INT8: struct.Struct("<b"),
        T.UINT16: struct.Struct("<H"), T.INT16: struct.Struct("<h"),
        T.UINT32: struct.Struct("<I"), T.INT32: struct.Struct("<i"),
        T.FLOAT32: struct.Struct("<f"), T.BOOL: struct.Struct("<?"),
        T.UINT64: struct.Struct("<Q"), T.INT64: struct.Struct("<q"),
        T.FLOAT64: struct.Struct("<d"),
    }  # fmt: skip


_FORMATS: dict[int, struct.Struct] = {}


def _formats() -> dict[int, struct.Struct]:
    if not _FORMATS:
        _FORMATS.update(_scalar_formats())
    return _FORMATS


def _value(r: _Reader, vtype: int, keep: bool) -> Any:
    """Read (``keep``) or skip one value of type ``vtype``; arrays are always skipped."""
    from gguf import GGUFValueType as T

    fmts = _formats()
    if vtype == T.STRING:
        if keep:
            return r.string()
        r.skip_strings(1)
        return None
    if vtype == T.ARRAY:
        item = r.unpack(_U32)
        count = r.unpack(_U64)
        if count > _MAX_ARRAY:
            raise GGUFError(f"corrupt GGUF (an array of {count} items)")
        if item == T.STRING:
            r.skip_strings(count)
        elif item in fmts:
            r.skip(fmts[item].size * count)
        else:  # nested arrays: not used by llama.cpp, walk them anyway
            for _ in range(count):
                _value(r, item, False)
        return None
    fmt = fmts.get(vtype)
    if fmt is None:
        raise GGUFError(f"corrupt GGUF (unknown value type {vtype})")
    value = r.unpack(fmt)
    return value if keep else None


def _wanted(key: str) -> bool:
    return (
        key.startswith(("general.", "split."))
        or key.endswith((".context_length", ".pooling_type"))
        or key == "tokenizer.chat_template"
    )


def _file_type_name(value: Any) -> str | None:
    from gguf import LlamaFileType

    try:
        name = LlamaFileType(int(value)).name
    except (ValueError, TypeError):
        return None
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def _pooling_name(value: Any) -> str | None:
    from gguf import PoolingType

    try:
        name = PoolingType(int(value)).name.lower()
    except (ValueError, TypeError):
        return None
    return None if name in ("none", "unspecified") else name


def _tensor_infos(r: _Reader, count: int) -> tuple[int, int]:
    """(total elements, bytes of tensor data the infos need) of ``count`` tensor infos."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    total = 0
    data_end = 0
    for _ in range(count):
        r.string(_MAX_KEY)
        n_dims = r.unpack(_U32)
        if n_dims > _MAX_DIMS:
            raise GGUFError(f"corrupt GGUF (a tensor with {n_dims} dimensions)")
        elements = 1
        for _ in range(n_dims):
            elements *= r.unpack(_U64)
        ttype = r.unpack(_U32)
        offset = r.unpack(_U64)
        total += elements
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            continue  # a type this gguf release does not know: no size check for it
        data_end = max(data_end, offset + elements // block * type_size)
    return total, data_end


def read_gguf_meta(path: str | os.PathLike[str]) -> GGUFMeta:
    """Parse the header of the GGUF at ``path``. Raises GGUFError or OSError."""
    from gguf import GGUF_MAGIC

    with open(path, "rb") as f:
        r = _Reader(f)
        try:
            magic = r.unpack(_U32)
        except GGUFError:
            raise GGUFError("not a GGUF file (too short)") from None
        if magic != GGUF_MAGIC:
            raise GGUFError("not a GGUF file (bad magic)")
        version = r.unpack(_U32)
        if version not in (2, 3):
            raise GGUFError(f"unsupported GGUF version {version}")
        n_tensors = r.unpack(_U64)
        n_kv = r.unpack(_U64)
        if n_tensors > _MAX_TENSORS or n_kv > _MAX_KV:
            raise GGUFError(f"corrupt GGUF ({n_tensors} tensors, {n_kv} key-values)")
        kv: dict[str, Any] = {}
        for _ in range(n_kv):
            key = r.string(_MAX_KEY)
            vtype = r.unpack(_U32)
            keep = _wanted(key)
            value = _value(r, vtype, keep)
            if keep:
                kv[key] = value
        parameters, data_end = _tensor_infos(r, n_tensors)
        align = kv.get("general.alignment")
        align = align if isinstance(align, int) and align > 0 else 32
        header_end = f.tell() - (len(r.buf) - r.pos)
        need = -(-header_end // align) * align + data_end
        if n_tensors and r.size < need:
            raise GGUFError(
                f"truncated GGUF ({r.size} bytes; its tensors need {need}): an interrupted "
                "download or copy?"
            )
    arch = kv.get("general.architecture")
    arch = arch if isinstance(arch, str) else None
    ctx = kv.get(f"{arch}.context_length") if arch else None
    pooling = kv.get(f"{arch}.pooling_type") if arch else None
    return GGUFMeta(
        version=version,
        architecture=arch,
        general_type=_str(kv.get("general.type")),
        name=_str(kv.get("general.name")),
        size_label=_str(kv.get("general.size_label")),
        file_type=_file_type_name(kv["general.file_type"]) if "general.file_type" in kv else None,
        context_length=int(ctx) if isinstance(ctx, int) and ctx > 0 else None,
        chat_template=bool(kv.get("tokenizer.chat_template")),
        pooling=_pooling_name(pooling) if pooling is not None else None,
        parameters=parameters if n_tensors else None,
        tensors=n_tensors,
        split_no=_int(kv.get("split.no")),
        split_count=_int(kv.get("split.count")),
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


class MetaCache:
    """:func:`read_gguf_meta` results by (path, size, mtime); errors are cached too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[tuple[int, int], GGUFMeta | str]] = {}
        self.reads = 0

    def get(self, path: Path, stamp: tuple[int, int]) -> GGUFMeta | str:
        """The metadata, or the reason it could not be read (one line)."""
        key = str(path)
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        result: GGUFMeta | str
        try:
            result = read_gguf_meta(path)
        except GGUFError as exc:
            result = str(exc)
        except OSError as exc:
            result = f"cannot read: {exc.strerror or exc}"
        with self._lock:
            self.reads += 1
            self._entries[key] = (stamp, result)
        return result

    def forget_missing(self, alive: set[str]) -> None:
        """Drop the entries of files no longer seen, so the cache does not grow forever."""
        with self._lock:
            for key in [k for k in self._entries if k not in alive]:
                del self._entries[key]


def file_stamp(st: os.stat_result) -> tuple[int, int]:
    return (st.st_size, st.st_mtime_ns)


__all__ = ["GGUFError", "GGUFMeta", "MetaCache", "file_stamp", "read_gguf_meta"]
