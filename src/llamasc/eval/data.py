"""The three benchmarks' questions: from the Hugging Face hub or a local JSONL/Parquet file.

Every item gets a stable id that does not depend on file order where the data has none:
MMLU ``<subject>/<hash>`` (a repeat of the same question within a subject gets ``#2``),
GSM8K ``gsm8k/<hash>`` (no duplicate questions), HumanEval its ``task_id``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from llamasc.errors import DataError

log = logging.getLogger(__name__)

Benchmark = Literal["mmlu", "gsm8k", "humaneval"]
BENCHMARKS: tuple[Benchmark, ...] = ("mmlu", "gsm8k", "humaneval")

# (hub path, config, split) per benchmark
HUB: dict[Benchmark, tuple[str, str | None, str]] = {
    "mmlu": ("cais/mmlu", "all", "test"),
    "gsm8k": ("openai/gsm8k", "main", "test"),
    "humaneval": ("openai/openai_humaneval", None, "test"),
}
DEFAULT_LIMIT: dict[Benchmark, int | None] = {"mmlu": 100, "gsm8k": 50, "humaneval": None}
_FIELDS: dict[Benchmark, tuple[str, ...]] = {
    "mmlu": ("question", "subject", "choices", "answer"),
    "gsm8k": ("question", "answer"),
    "humaneval": ("task_id", "prompt", "canonical_solution", "test", "entry_point"),
}


@dataclass(frozen=True)
class Item:
    """One question: its stable id and its row in the dataset's own schema."""

    id: str
    benchmark: Benchmark
    row: Mapping[str, Any] = field(hash=False, compare=False)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12]


def _check_row(benchmark: Benchmark, row: Mapping[str, Any], where: str) -> dict[str, Any]:
    missing = [f for f in _FIELDS[benchmark] if f not in row]
    if missing:
        raise DataError(f"{where}: not a {benchmark} row, missing field(s) {', '.join(missing)}")
    out = dict(row)
    if benchmark == "mmlu":
        answer = out["answer"]
        if isinstance(answer, str) and answer.strip().upper() in ("A", "B", "C", "D"):
            out["answer"] = "ABCD".index(answer.strip().upper())
        if not isinstance(out["answer"], int) or not 0 <= out["answer"] <= 3:
            raise DataError(f"{where}: MMLU answer must be 0-3 or A-D, got {answer!r}")
        if len(out["choices"]) != 4:
            raise DataError(f"{where}: MMLU needs 4 choices, got {len(out['choices'])}")
        out["choices"] = [str(c) for c in out["choices"]]
    elif benchmark == "gsm8k" and "####" not in str(out["answer"]):
        raise DataError(f"{where}: GSM8K answer has no '#### N' final line")
    return out


def to_items(benchmark: Benchmark, rows: Iterable[Mapping[str, Any]], source: str) -> list[Item]:
    """Validate rows of one benchmark's schema and give each a stable id."""
    items: list[Item] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(rows):
        row = _check_row(benchmark, raw, f"{source}: row {index + 1}")
        if benchmark == "mmlu":
            base = f"{row['subject']}/{_digest(str(row['question']), *row['choices'])}"
        elif benchmark == "gsm8k":
            base = f"gsm8k/{_digest(str(row['question']))}"
        else:
            base = str(row["task_id"])
        seen[base] = seen.get(base, 0) + 1
        item_id = base if seen[base] == 1 else f"{base}#{seen[base]}"
        items.append(Item(id=item_id, benchmark=benchmark, row=row))
    if not items:
        raise DataError(f"{source}: no {benchmark} questions in it")
    return items


def read_data_file(path: Path) -> list[dict[str, Any]]:
    """Rows of a local JSONL (``.jsonl``/``.json``) or Parquet (``.parquet``) file."""
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if path.suffix.lower() == ".parquet":
        try:
            pq: Any = importlib.import_module("pyarrow.parquet")
            rows: list[dict[str, Any]] = pq.read_table(str(path)).to_pylist()
        except ImportError:
            raise DataError("reading Parquet needs pyarrow (it comes with 'datasets')") from None
        except Exception as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
        return rows
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: each line must be a JSON object")
            rows.append(obj)
    return rows


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host answers a TCP connect, so an offline host fails in seconds.

    ``datasets`` otherwise retries for tens of seconds before giving up.
    """
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parts = urlsplit(endpoint)
    host = parts.hostname or "huggingface.co"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_requested() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def load_hub(benchmark: Benchmark) -> list[dict[str, Any]]:
    """Rows from the hub (or the local datasets cache when offline)."""
    name, config, split = HUB[benchmark]
    hint = (
        f"cannot load {name} from the Hugging Face hub (%s); pass --data-file PATH "
        "(a JSONL or Parquet file in the same schema), or make the hub reachable"
    )
    offline = _offline_requested() or not _hub_reachable()
    if offline:
        # only a cached copy can work now; tell the libraries before they try the network
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "20")
    try:
        datasets: Any = importlib.import_module("datasets")
        if offline:
            datasets.config.HF_HUB_OFFLINE = True
            hub_constants: Any = importlib.import_module("huggingface_hub.constants")
            hub_constants.HF_HUB_OFFLINE = True
        ds = datasets.load_dataset(name, config, split=split)
    except ImportError:
        raise DataError(hint % "the 'datasets' package is not installed") from None
    except Exception as exc:
        reason = "offline and not in the local cache" if offline else type(exc).__name__
        raise DataError(hint % reason) from None
    return [dict(row) for row in ds]


def load_items(benchmark: Benchmark, data_file: Path | None = None) -> list[Item]:
    """All questions of a benchmark, from ``data_file`` if given, else from the hub."""
    if data_file is not None:
        return to_items(benchmark, read_data_file(data_file), str(data_file))
    return to_items(benchmark, load_hub(benchmark), HUB[benchmark][0])


def select(items: list[Item], limit: int | None, seed: int) -> list[Item]:
    """A deterministic subset of ``limit`` items for ``seed``.

    Items are ranked by a hash of (seed, id), so a bigger limit with the same seed is a superset
    of a smaller one: raising ``--limit`` on a resumed run only asks the new questions.
    """
    if limit is None or limit >= len(items):
        ranked = items
    else:
        if limit < 1:
            raise DataError(f"--limit must be at least 1, got {limit}")
        ranked = sorted(items, key=lambda it: hashlib.sha256(f"{seed}:{it.id}".encode()).digest())
        ranked = ranked[:limit]
    return list(ranked)


__all__ = [
    "BENCHMARKS",
    "DEFAULT_LIMIT",
    "HUB",
    "Benchmark",
    "Item",
    "load_hub",
    "load_items",
    "read_data_file",
    "select",
    "to_items",
]
