"""Rendering report rows as Markdown, CSV or JSON (the rich table lives in the CLI)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from llamasc.bench.stats import ArmRow, Stat

DEFINITIONS = {
    "decode_tps": "server timings: 1000 * (predicted_n - 1) / predicted_ms, per request",
    "prompt_tps": "server timings: 1000 * prompt_n / prompt_ms (cache_prompt off)",
    "acceptance": "sum(draft_n_accepted) / sum(draft_n) over the arm's requests",
    "speedup": "median decode tok/s of the arm / of the baseline arm (same model, host, build)",
    "e2e_speedup": "median end-to-end seconds of the baseline / of the arm (client clock)",
    "spread": "sample standard deviation",
    "ttft": "client: request sent -> first content token (streaming)",
}


def fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def fmt_stat(stat: Stat | None, digits: int = 1, scale: float = 1.0) -> str:
    if stat is None:
        return "-"
    return f"{stat.median * scale:.{digits}f} ± {stat.stdev * scale:.{digits}f}"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _multi(rows: Sequence[ArmRow], attr: str) -> bool:
    return len({getattr(r, attr) for r in rows}) > 1


def table_columns(rows: Sequence[ArmRow]) -> list[str]:
    """Column titles shared by the rich table and Markdown."""
    cols = ["model"]
    if _multi(rows, "host"):
        cols.append("host")
    if _multi(rows, "build"):
        cols.append("build")
    if any(r.category for r in rows):
        cols.append("category")
    return [
        *cols,
        "arm",
        "n",
        "decode tok/s",
        "speedup",
        "accept",
        "prompt tok/s",
        "TTFT ms",
        "E2E s",
        "status",
    ]


def table_cells(row: ArmRow, columns: Sequence[str]) -> list[str]:
    status = row.status if not row.errors else f"{row.status} ({row.errors} errors)"
    if row.status == "unsupported" and row.error:
        status = f"unsupported: {row.error}"
    values = {
        "model": row.model,
        "host": row.host,
        "build": row.build,
        "category": row.category or "",
        "arm": row.arm,
        "n": str(row.n),
        "decode tok/s": fmt_stat(row.decode),
        "speedup": fmt(row.speedup, 2, "x"),
        "accept": fmt_pct(row.acceptance),
        "prompt tok/s": fmt(row.prompt.median if row.prompt else None),
        "TTFT ms": fmt(row.ttft.median * 1000 if row.ttft else None, 0),
        "E2E s": fmt(row.e2e.median if row.e2e else None, 2),
        "status": status,
    }
    return [values[c] for c in columns]


def render_markdown(rows: Sequence[ArmRow]) -> str:
    columns = table_columns(rows)
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [c.replace("|", "\\|") for c in table_cells(row, columns)]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("decode tok/s: median ± sample stddev of " + DEFINITIONS["decode_tps"] + ".")
    out.append("speedup: " + DEFINITIONS["speedup"] + "; accept: " + DEFINITIONS["acceptance"])
    return "\n".join(out) + "\n"


CSV_FIELDS = [
    "host",
    "build",
    "model",
    "arm",
    "category",
    "status",
    "n",
    "errors",
    "decode_tps_median",
    "decode_tps_stdev",
    "decode_tps_min",
    "decode_tps_max",
    "speedup",
    "e2e_speedup",
    "acceptance",
    "drafted",
    "prompt_tps_median",
    "ttft_ms_median",
    "e2e_s_median",
    "baseline",
    "error",
]


def _csv_row(row: ArmRow) -> dict[str, Any]:
    def num(value: float | None) -> str:
        return "" if value is None else f"{value:.6g}"

    d, p, t, e = row.decode, row.prompt, row.ttft, row.e2e
    return {
        "host": row.host,
        "build": row.build,
        "model": row.model,
        "arm": row.arm,
        "category": row.category or "",
        "status": row.status,
        "n": row.n,
        "errors": row.errors,
        "decode_tps_median": num(d.median if d else None),
        "decode_tps_stdev": num(d.stdev if d else None),
        "decode_tps_min": num(d.min if d else None),
        "decode_tps_max": num(d.max if d else None),
        "speedup": num(row.speedup),
        "e2e_speedup": num(row.e2e_speedup),
        "acceptance": num(row.acceptance),
        "drafted": row.drafted,
        "prompt_tps_median": num(p.median if p else None),
        "ttft_ms_median": num(t.median * 1000 if t else None),
        "e2e_s_median": num(e.median if e else None),
        "baseline": row.baseline or "",
        "error": row.error or "",
    }


def render_csv(rows: Sequence[ArmRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(_csv_row(row))
    return buf.getvalue()


def render_json(rows: Sequence[ArmRow]) -> str:
    return (
        json.dumps({"definitions": DEFINITIONS, "rows": [r.as_dict() for r in rows]}, indent=2)
        + "\n"
    )


RENDERERS = {"md": render_markdown, "csv": render_csv, "json": render_json}

__all__ = [
    "CSV_FIELDS",
    "DEFINITIONS",
    "RENDERERS",
    "render_csv",
    "render_json",
    "render_markdown",
    "table_cells",
    "table_columns",
]
