"""Side-by-side reports of the agent prompts: Markdown and one self-contained HTML page.

Every model output is untrusted text: in HTML it is escaped (``html.escape``) and shown in
``<pre>``; in Markdown it sits in a fence longer than any backtick run inside it.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from llamasc.eval.agents import AgentReply, PromptSet
from llamasc.eval.store import atomic_write_text


def _mark(reply: AgentReply) -> str:
    if reply.error:
        return "error"
    return {True: "pass", False: "fail", None: "-"}[reply.passed]


def _speed(reply: AgentReply) -> str:
    lat = f"{reply.latency_s:.2f}s" if reply.latency_s is not None else "-"
    tps = f"{reply.tokens_per_s:.1f} tok/s" if reply.tokens_per_s is not None else "-"
    return f"{lat}, {tps}"


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _index(replies: Sequence[AgentReply]) -> dict[tuple[str, str], AgentReply]:
    return {(r.prompt_id, r.model): r for r in replies}


def to_markdown(prompt_set: PromptSet, models: Sequence[str], replies: Sequence[AgentReply]) -> str:
    by = _index(replies)
    lines = ["# Agent prompts, side by side", ""]
    lines.append("| prompt | " + " | ".join(_cell(m) for m in models) + " |")
    lines.append("|---" * (len(models) + 1) + "|")
    for p in prompt_set.prompts:
        cells = [f"{_mark(by[(p.id, m)])} ({_speed(by[(p.id, m)])})" for m in models]
        lines.append(f"| {_cell(p.id)} ({_cell(p.role)}) | " + " | ".join(cells) + " |")
    totals = [sum(1 for p in prompt_set.prompts if by[(p.id, m)].passed) for m in models]
    checked = sum(1 for p in prompt_set.prompts if p.check.model_dump(exclude_defaults=True))
    lines.append("| **checks passed** | " + " | ".join(f"{t}/{checked}" for t in totals) + " |")
    for p in prompt_set.prompts:
        lines += ["", f"## {p.id} ({p.role})", "", _fence(p.user)]
        for m in models:
            r = by[(p.id, m)]
            lines += ["", f"### {m}: {_mark(r)}, {_speed(r)}"]
            if r.problems:
                lines.append("Check: " + "; ".join(r.problems))
            lines += ["", _fence(r.error or r.output)]
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin-bottom:2rem}td,th{border:1px solid #ccc;padding:.3rem .6rem}
.grid{display:grid;gap:.8rem;grid-template-columns:repeat(var(--cols),minmax(0,1fr))}
.card{border:1px solid #ccc;border-radius:6px;padding:.5rem;overflow:auto}
pre{white-space:pre-wrap;word-break:break-word;font-size:.85rem;margin:.3rem 0}
.pass{color:#0a7d32;font-weight:600}.fail{color:#b3261e;font-weight:600}
.error{color:#b3261e}.meta{color:#666;font-size:.85rem}
"""


def to_html(prompt_set: PromptSet, models: Sequence[str], replies: Sequence[AgentReply]) -> str:
    """A self-contained page (inline CSS, no scripts, every text escaped)."""
    e = html.escape
    by = _index(replies)
    head = "".join(f"<th>{e(m)}</th>" for m in models)
    rows = []
    for p in prompt_set.prompts:
        tds = "".join(
            f'<td><span class="{_mark(by[(p.id, m)])}">{e(_mark(by[(p.id, m)]))}</span> '
            f'<span class="meta">{e(_speed(by[(p.id, m)]))}</span></td>'
            for m in models
        )
        rows.append(f"<tr><th>{e(p.id)}</th><td>{e(p.role)}</td>{tds}</tr>")
    sections = []
    for p in prompt_set.prompts:
        cards = []
        for m in models:
            r = by[(p.id, m)]
            problems = f'<div class="meta">{e("; ".join(r.problems))}</div>' if r.problems else ""
            cards.append(
                f'<div class="card"><b>{e(m)}</b> <span class="{_mark(r)}">{e(_mark(r))}</span> '
                f'<span class="meta">{e(_speed(r))}</span>{problems}'
                f"<pre>{e(r.error or r.output)}</pre></div>"
            )
        sections.append(
            f'<section><h2>{e(p.id)} <span class="meta">({e(p.role)})</span></h2>'
            f'<pre class="meta">{e(p.user)}</pre>'
            f'<div class="grid" style="--cols:{len(models)}">{"".join(cards)}</div></section>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>llamasc agent prompts</title>"
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<style>{_CSS}</style></head><body><h1>Agent prompts, side by side</h1>"
        f"<table><tr><th>prompt</th><th>role</th>{head}</tr>{''.join(rows)}</table>"
        f"{''.join(sections)}</body></html>\n"
    )


def write_reports(
    out_dir: Path, prompt_set: PromptSet, models: Sequence[str], replies: Sequence[AgentReply]
) -> tuple[Path, Path, Path]:
    """``<out>/agents/agents-<id>.{json,md,html}``; the id hashes models and prompts."""
    ident = hashlib.sha256(
        json.dumps([list(models), prompt_set.model_dump()], sort_keys=True).encode()
    ).hexdigest()[:12]
    stem = out_dir / "agents" / f"agents-{ident}"
    paths = (stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".html"))
    payload = {"models": list(models), "replies": [asdict(r) for r in replies]}
    atomic_write_text(paths[0], json.dumps(payload, indent=2) + "\n")
    atomic_write_text(paths[1], to_markdown(prompt_set, models, replies))
    atomic_write_text(paths[2], to_html(prompt_set, models, replies))
    return paths


__all__ = ["to_html", "to_markdown", "write_reports"]
