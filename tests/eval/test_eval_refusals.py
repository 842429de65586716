"""How one run treats HTTP refusals: a question too long for the context is scored wrong and
recorded; a server error stops the run (nothing is recorded for it)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from eval_test_helpers import DATA, lines_of

from llamasc.client import ChatClient
from llamasc.errors import LlamascError
from llamasc.eval import EvalOptions, Reporter, load_items
from llamasc.eval.run import _Asker
from llamasc.eval.store import ResultStore, RunSpec

pytestmark = pytest.mark.anyio


def scripted(status: int, message: str) -> httpx.MockTransport:
    def reply(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": status, "message": message, "type": "x"}}
        return httpx.Response(status, content=json.dumps(body).encode())

    return httpx.MockTransport(reply)


def asker(tmp_path: Path, transport: httpx.MockTransport) -> tuple[_Asker, ResultStore]:
    spec = RunSpec(
        "mmlu", "http://test", "m", (), "v1", {"temperature": 0.0, "max_tokens": 8, "seed": 0}
    )
    store = ResultStore(tmp_path, spec)
    client = ChatClient("http://test", transport=transport)
    return _Asker(spec, store, client, EvalOptions(out_dir=tmp_path), Reporter()), store


async def test_a_question_longer_than_the_context_is_recorded_as_wrong(tmp_path: Path) -> None:
    item = load_items("mmlu", DATA / "mmlu_small.jsonl")[0]
    ask, store = asker(tmp_path, scripted(400, "the request exceeds the available context size"))
    await ask.ask(item)
    store.close()
    (record,) = lines_of(store.path)
    assert record["correct"] is False
    assert record["unparseable"] is True
    assert "exceeds the available context size" in record["error"]
    assert record["gold"] == "ABCD"[item.row["answer"]]


@pytest.mark.parametrize("status", [500, 503, 401, 404])
async def test_server_side_failures_stop_the_run_and_record_nothing(
    tmp_path: Path, status: int
) -> None:
    item = load_items("mmlu", DATA / "mmlu_small.jsonl")[0]
    ask, store = asker(tmp_path, scripted(status, "boom"))
    with pytest.raises(LlamascError, match=f"HTTP {status}"):
        await ask.ask(item)
    store.close()
    assert not store.path.exists() or lines_of(store.path) == []
