"""Statistics and report rendering on a canned results file (numbers worked out by hand).

qwen: mtp-off decode tok/s 50, 40, 62.5 (median 50); mtp-on 80, 100, 62.5 (median 80) ->
speedup 1.6; drafts 30+20+10 with 24+15+8 accepted -> acceptance 47/60; e2e medians 2.1 s
and 1.35 s -> e2e speedup 2.1/1.35. gemma: mtp-off 40 twice (an error later retried ok),
mtp-on unsupported. The file ends with a torn line, as after a crash.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamasc.bench.records import read_records
from llamasc.bench.report import render_csv, render_json, render_markdown
from llamasc.bench.stats import decode_tps, summarize, summarize_values
from llamasc.cli import main

DATA = Path(__file__).parent / "data" / "results.jsonl"


@pytest.fixture
def rows() -> list:  # type: ignore[type-arg]
    return summarize(read_records(DATA).records)


def _row(rows: list, model: str, arm: str):  # type: ignore[no-untyped-def,type-arg]
    return next(r for r in rows if r.model == model and r.arm == arm)


def test_medians_spread_speedup_and_acceptance(rows: list) -> None:  # type: ignore[type-arg]
    off, on = _row(rows, "qwen", "mtp-off"), _row(rows, "qwen", "mtp-on")
    assert off.decode.median == pytest.approx(50.0)
    assert off.decode.stdev == pytest.approx(11.2731, abs=1e-4)
    assert (off.decode.min, off.decode.max, off.n) == (40.0, 62.5, 3)
    assert on.decode.median == pytest.approx(80.0)
    assert on.speedup == pytest.approx(1.6)
    assert off.speedup == pytest.approx(1.0)
    assert on.acceptance == pytest.approx(47 / 60)
    assert off.acceptance is None
    assert on.e2e_speedup == pytest.approx(2.1 / 1.35)
    assert on.prompt.median == pytest.approx(500.0)
    assert on.ttft.median == pytest.approx(0.2)
    assert on.baseline == "mtp-off"


def test_unsupported_arm_and_retried_error(rows: list) -> None:  # type: ignore[type-arg]
    assert [(r.model, r.arm, r.status) for r in rows] == [
        ("gemma", "mtp-off", "ok"),
        ("gemma", "mtp-on", "unsupported"),
        ("qwen", "mtp-off", "ok"),
        ("qwen", "mtp-on", "ok"),
    ]
    gemma_off, gemma_on = _row(rows, "gemma", "mtp-off"), _row(rows, "gemma", "mtp-on")
    assert (gemma_off.n, gemma_off.errors) == (2, 0)  # the later ok record replaced the error
    assert "failed to create MTP context" in gemma_on.error
    assert gemma_on.speedup is None


def test_explicit_baseline_and_per_category_rows() -> None:
    records = read_records(DATA).records
    by_on = summarize(records, baseline="mtp-on")
    assert _row(by_on, "qwen", "mtp-off").speedup == pytest.approx(50 / 80)
    cats = summarize(records, by_category=True)
    code_on = next(r for r in cats if (r.model, r.arm, r.category) == ("qwen", "mtp-on", "code"))
    assert code_on.decode.median == pytest.approx((80 + 62.5) / 2)
    assert code_on.speedup == pytest.approx(71.25 / 56.25)


@given(st.lists(st.floats(min_value=0.1, max_value=1e4), min_size=1, max_size=30))
def test_summary_stat_invariants(values: list[float]) -> None:
    s = summarize_values(values)
    assert s is not None
    assert s.min <= s.median <= s.max
    assert s.min <= s.mean * (1 + 1e-9)
    assert s.mean <= s.max * (1 + 1e-9)
    assert s.stdev >= 0
    assert (s.stdev == 0) == (len(values) == 1) or len(set(values)) == 1


@pytest.mark.parametrize(
    ("timings", "tps"),
    [
        ({"predicted_n": 101, "predicted_ms": 2000}, 50.0),
        ({"predicted_n": 1, "predicted_ms": 10}, None),
        ({"predicted_n": 5, "predicted_ms": 0}, None),
        ({}, None),
    ],
)
def test_decode_rate_excludes_the_first_token(timings: dict, tps: float | None) -> None:  # type: ignore[type-arg]
    assert decode_tps(timings) == tps


def test_markdown(rows: list) -> None:  # type: ignore[type-arg]
    md = render_markdown(rows)
    lines = md.splitlines()
    assert lines[0] == (
        "| model | arm | n | decode tok/s | speedup | accept | prompt tok/s | TTFT ms | E2E s | "
        "status |"
    )
    assert "| qwen | mtp-on | 3 | 80.0 ± 18.8 | 1.60x | 78% | 500.0 | 200 | 1.35 | ok |" in lines
    assert any(
        ln.startswith("| gemma | mtp-on | 0 | - | - |") and "unsupported" in ln for ln in lines
    )


def test_csv(rows: list) -> None:  # type: ignore[type-arg]
    table = list(csv.DictReader(io.StringIO(render_csv(rows))))
    on = next(r for r in table if (r["model"], r["arm"]) == ("qwen", "mtp-on"))
    assert float(on["decode_tps_median"]) == pytest.approx(80)
    assert float(on["speedup"]) == pytest.approx(1.6)
    assert float(on["acceptance"]) == pytest.approx(47 / 60, rel=1e-5)
    assert on["drafted"] == "60"
    unsupported = next(r for r in table if r["status"] == "unsupported")
    assert unsupported["decode_tps_median"] == ""


def test_json(rows: list) -> None:  # type: ignore[type-arg]
    doc = json.loads(render_json(rows))
    assert "decode_tps" in doc["definitions"]
    on = next(r for r in doc["rows"] if (r["model"], r["arm"]) == ("qwen", "mtp-on"))
    assert on["decode"]["median"] == pytest.approx(80)
    assert on["decode"]["cv"] == pytest.approx(on["decode"]["stdev"] / on["decode"]["mean"])


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the real entry point (errors mapped to one red line + exit code)."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("fmt", ["md", "csv", "json"])
def test_report_cli_formats(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["bench", "report", str(DATA), "--format", fmt], capsys)
    assert code == 0, err
    assert "qwen" in out
    assert "1.6" in out
    assert "torn last line" in err


def test_report_cli_table_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["bench", "report", str(DATA)], capsys)
    assert code == 0
    assert "qwen" in out
    assert "mtp-on" in out
    code, _, err = _cli(["bench", "report", str(DATA), "--format", "xml"], capsys)
    assert code == 2
    assert "--format must be" in err
    code, _, err = _cli(["bench", "report", str(tmp_path / "nope.jsonl")], capsys)
    assert code == 2
    assert "no results file" in err
    assert "Traceback" not in err


def test_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_png = tmp_path / "p.png"
    code, _, err = _cli(
        ["bench", "report", str(DATA), "--format", "md", "--plot", str(out_png)], capsys
    )
    if importlib.util.find_spec("matplotlib") is None:
        assert code == 2
        assert err.count("\n") == 2  # the torn-line warning and one line for the error
        assert "--plot needs matplotlib: pip install matplotlib" in err
    else:
        assert code == 0
        assert out_png.stat().st_size > 1000
