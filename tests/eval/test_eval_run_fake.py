"""Runs against our fake llama-server: resume, a server dying mid-run, corrupt records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_test_helpers import DATA, free_port, lines_of

from llamasc.errors import DaemonUnreachableError, FlagError, UpstreamError
from llamasc.eval import EvalOptions, Reporter, evaluate, load_items, select

pytestmark = pytest.mark.anyio


def options(url: str, out: Path, **kw: object) -> EvalOptions:
    return EvalOptions(endpoint=url, out_dir=out, max_tokens=16, concurrency=1, **kw)  # type: ignore[arg-type]


async def test_run_writes_records_and_summaries_then_resumes_without_asking(
    fake_llama_server_bin: Path, start_server, tmp_path: Path
) -> None:
    server = start_server(fake_llama_server_bin, "fake.gguf")
    items = load_items("gsm8k", DATA / "gsm8k_small.jsonl")
    first = await evaluate("gsm8k", items, options(server.url, tmp_path))
    assert (first.asked, first.reused) == (6, 0)
    records = lines_of(first.records_path)
    assert len(records) == 6
    assert {r["qid"] for r in records} == {i.id for i in items}
    for rec in records:
        assert rec["raw"]  # the fake echoes the question
        assert {"extracted", "extracted_strict", "correct", "correct_strict", "gold"} <= rec.keys()
        assert rec["model"] == "fake.gguf"
    summary = json.loads(first.summary_paths[0].read_text())
    assert summary["score"]["n"] == 6
    assert "strict" in summary
    assert first.summary_paths[1].read_text().startswith("# gsm8k")
    again = await evaluate("gsm8k", items, options(server.url, tmp_path))
    assert (again.asked, again.reused) == (0, 6)
    assert len(lines_of(first.records_path)) == 6


async def test_a_bigger_limit_asks_only_the_new_questions(
    fake_llama_server_bin: Path, start_server, tmp_path: Path
) -> None:
    server = start_server(fake_llama_server_bin, "fake.gguf")
    items = load_items("mmlu", DATA / "mmlu_small.jsonl")
    small = await evaluate("mmlu", select(items, 4, 3), options(server.url, tmp_path))
    big = await evaluate("mmlu", select(items, 7, 3), options(server.url, tmp_path))
    assert (small.asked, big.asked, big.reused) == (4, 3, 4)
    assert len(lines_of(big.records_path)) == 7


async def test_a_dead_server_stops_the_run_and_keeps_the_answers(
    fake_llama_server_bin: Path, start_server, tmp_path: Path
) -> None:
    server = start_server(fake_llama_server_bin, "fake.gguf", "--fake-crash-after-requests", "3")
    items = load_items("gsm8k", DATA / "gsm8k_small.jsonl")
    with pytest.raises(UpstreamError) as err:
        await evaluate("gsm8k", items, options(server.url, tmp_path))
    message = str(err.value)
    assert "stopped answering" in message
    assert "3 answers are kept" in message
    assert "\n" not in message
    path = next((tmp_path / "gsm8k").glob("*.jsonl"))
    assert len(lines_of(path)) == 3
    # the same endpoint comes back: only the missing questions are asked
    server.stop()
    revived = start_server(fake_llama_server_bin, "fake.gguf", port=server.port)
    result = await evaluate("gsm8k", items, options(revived.url, tmp_path))
    assert (result.asked, result.reused) == (3, 3)
    final = lines_of(path)
    assert len(final) == 6
    assert len({r["qid"] for r in final}) == 6


async def test_nothing_listening_is_one_clear_error(tmp_path: Path) -> None:
    items = load_items("gsm8k", DATA / "gsm8k_small.jsonl")
    with pytest.raises(DaemonUnreachableError, match="nothing answers at"):
        await evaluate("gsm8k", items, options(f"http://127.0.0.1:{free_port()}", tmp_path))


async def test_corrupt_lines_are_reported_and_their_questions_asked_again(
    fake_llama_server_bin: Path, start_server, tmp_path: Path
) -> None:
    server = start_server(fake_llama_server_bin, "fake.gguf")
    items = load_items("gsm8k", DATA / "gsm8k_small.jsonl")
    first = await evaluate("gsm8k", items, options(server.url, tmp_path))
    lines = first.records_path.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]  # an old crash cut this record short
    first.records_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    warnings: list[str] = []
    again = await evaluate(
        "gsm8k", items, options(server.url, tmp_path), Reporter(warn=warnings.append)
    )
    assert again.asked == 1
    assert again.corrupt_lines == [3]
    assert any("corrupt" in w for w in warnings)


async def test_flags_on_a_plain_server_are_a_label_and_say_so(
    fake_llama_server_bin: Path, start_server, tmp_path: Path
) -> None:
    server = start_server(fake_llama_server_bin, "fake.gguf")
    items = load_items("gsm8k", DATA / "gsm8k_small.jsonl")[:2]
    warnings: list[str] = []
    result = await evaluate(
        "gsm8k",
        items,
        options(server.url, tmp_path, flags="-ctk q8_0 -c 512"),
        Reporter(warn=warnings.append),
    )
    assert result.spec.flags == ("--cache-type-k", "q8_0", "--ctx-size", "512")
    assert any("not a llamasc daemon" in w for w in warnings)
    plain = await evaluate("gsm8k", items, options(server.url, tmp_path))
    assert plain.asked == 2  # a different flag set is a different run


async def test_a_flag_typo_is_refused_before_any_question(
    fake_llama_server_bin: Path, start_server, tmp_path: Path
) -> None:
    server = start_server(fake_llama_server_bin, "fake.gguf")
    items = load_items("gsm8k", DATA / "gsm8k_small.jsonl")[:2]
    with pytest.raises(FlagError) as err:
        await evaluate("gsm8k", items, options(server.url, tmp_path, flags="--cache-tpye-k q8_0"))
    assert "did you mean '--cache-type-k'" in " ".join(err.value.details)
    assert not (tmp_path / "gsm8k").exists()
