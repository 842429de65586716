"""The prompt set: stable ids, categories, chat messages. YAML or JSONL."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from llamasc.errors import DataError

PROMPTS_FILE = "bench-prompts.yaml"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


@dataclass(frozen=True)
class Prompt:
    """One prompt of the set."""

    id: str
    category: str
    messages: tuple[dict[str, str], ...]


def default_prompts_path() -> Path:
    """The shipped prompt set: inside the installed package, else the source tree's configs/."""
    packaged = resources.files("llamasc").joinpath("configs", PROMPTS_FILE)
    if packaged.is_file():
        return Path(str(packaged))
    source_tree = Path(__file__).resolve().parents[3] / "configs" / PROMPTS_FILE
    if source_tree.is_file():
        return source_tree
    raise DataError(f"the shipped prompt set {PROMPTS_FILE} is missing; pass --prompts PATH")


def _prompt(raw: Any, where: str) -> Prompt:
    if not isinstance(raw, dict):
        raise DataError(f"{where}: each prompt must be a mapping")
    pid = raw.get("id")
    if not isinstance(pid, str) or not _ID.match(pid):
        raise DataError(f"{where}: missing or invalid 'id' {pid!r}")
    category = raw.get("category", "uncategorized")
    if not isinstance(category, str) or not category:
        raise DataError(f"{where} ({pid}): 'category' must be a string")
    messages: list[dict[str, str]] = []
    if isinstance(raw.get("system"), str):
        messages.append({"role": "system", "content": raw["system"]})
    if "messages" in raw:
        if not isinstance(raw["messages"], list) or not raw["messages"]:
            raise DataError(f"{where} ({pid}): 'messages' must be a non-empty list")
        for msg in raw["messages"]:
            if not (
                isinstance(msg, dict)
                and isinstance(msg.get("role"), str)
                and isinstance(msg.get("content"), str)
            ):
                raise DataError(f"{where} ({pid}): each message needs 'role' and 'content'")
            messages.append({"role": msg["role"], "content": msg["content"]})
    elif isinstance(raw.get("prompt"), str) and raw["prompt"].strip():
        messages.append({"role": "user", "content": raw["prompt"]})
    else:
        raise DataError(f"{where} ({pid}): needs 'prompt' or 'messages'")
    return Prompt(id=pid, category=category, messages=tuple(messages))


def parse_prompts(text: str, *, source: str, jsonl: bool = False) -> list[Prompt]:
    """Parse a prompt set; ids must be unique."""
    raws: list[Any]
    if jsonl:
        raws = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    raws.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{source} line {n}: not JSON: {exc.msg}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DataError(f"{source}: not valid YAML: {exc}") from None
        found = data.get("prompts") if isinstance(data, dict) else data
        if not isinstance(found, list):
            raise DataError(f"{source}: expected a 'prompts:' list")
        raws = found
    prompts = [_prompt(raw, f"{source} prompt {i + 1}") for i, raw in enumerate(raws)]
    seen: set[str] = set()
    for p in prompts:
        if p.id in seen:
            raise DataError(f"{source}: prompt id {p.id!r} is used twice")
        seen.add(p.id)
    if not prompts:
        raise DataError(f"{source}: no prompts")
    return prompts


def load_prompts(path: Path | None = None, categories: Sequence[str] = ()) -> list[Prompt]:
    """Read a prompt set (default: the shipped one), keeping only ``categories`` if given."""
    path = path or default_prompts_path()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read prompts {path}: {exc.strerror or exc}") from None
    prompts = parse_prompts(text, source=str(path), jsonl=path.suffix == ".jsonl")
    if categories:
        have = sorted({p.category for p in prompts})
        unknown = [c for c in categories if c not in have]
        if unknown:
            raise DataError(
                f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)} "
                f"(in {path.name}: {', '.join(have)})"
            )
        prompts = [p for p in prompts if p.category in categories]
    return prompts


__all__ = ["Prompt", "default_prompts_path", "load_prompts", "parse_prompts"]
