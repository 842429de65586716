"""``llamasc eval report``: summarise every run found under an output directory again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llamasc.eval.store import RunSpec, iter_run_files, read_records
from llamasc.eval.summary import Summary, summarise


@dataclass
class RunReport:
    path: Path
    summary: Summary
    corrupt_lines: int


def collect(out_dir: Path) -> list[RunReport]:
    """One summary per records file (all its good records), newest configuration last."""
    reports: list[RunReport] = []
    for path in iter_run_files(out_dir):
        records, corrupt = read_records(path)
        records = [r for r in records if r.get("benchmark") and r.get("qid")]
        if not records:
            continue
        first = records[0]
        spec = RunSpec(
            benchmark=first["benchmark"],
            endpoint=str(first.get("endpoint", "")),
            model=str(first.get("model", "")),
            flags=tuple(first.get("flags") or ()),
            prompt_version=str(first.get("prompt_version", "")),
            sampling=dict(first.get("sampling") or {}),
        )
        latest = {r["qid"]: r for r in records if r.get("key") == spec.key(str(r["qid"]))}
        reports.append(RunReport(path, summarise(spec, list(latest.values())), corrupt))
    reports.sort(key=lambda r: r.path.stat().st_mtime)
    return reports


__all__ = ["RunReport", "collect"]
