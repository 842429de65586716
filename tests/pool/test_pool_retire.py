"""Retiring sidecars whose model changed or went away (model rescans), and the operator
arguments a discovered model brings: scheduler events only, no asyncio."""

from __future__ import annotations

from pathlib import Path

from llamasc.config.gguf_meta import GGUFMeta
from llamasc.config.models import ModelEntry
from llamasc.pool.effects import Grant, Start, Stop
from llamasc.pool.eviction import SidecarState
from llamasc.pool.model_args import model_base_args, model_defaults
from llamasc.pool.scheduler import Scheduler


def ready_one(s: Scheduler, req: int, key: str, now: float = 0.0) -> None:
    assert s.request(req, key, now) == [Start(key)]
    assert s.ready(key, now) == [Grant(req, key)]


def test_an_idle_sidecar_is_retired_at_once() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=60)
    ready_one(s, 1, "a")
    s.released(1, 1.0)
    assert s.retire("a", 2.0) == [Stop("a", "retired")]
    assert s.retire("a", 2.0) == []  # already stopping


def test_a_busy_sidecar_finishes_in_flight_requests_then_stops() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=60)
    ready_one(s, 1, "a")
    assert s.request(2, "a", 0.5) == [Grant(2, "a")]
    assert s.retire("a", 1.0) == []
    # new requests are not given the outdated child: they wait for its successor
    assert s.request(3, "a", 1.5) == []
    assert s.released(1, 2.0) == []
    assert s.sidecars["a"].state is SidecarState.READY
    assert s.released(2, 3.0) == [Stop("a", "retired")]
    assert s.stopped("a", 4.0) == [Start("a")]  # the waiter gets a fresh child
    assert s.ready("a", 5.0) == [Grant(3, "a")]
    assert not s.sidecars["a"].retiring


def test_a_starting_sidecar_is_stopped_and_its_waiters_get_a_fresh_start() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    assert s.request(1, "a", 0) == [Start("a")]
    assert s.retire("a", 0.5) == [Stop("a", "retired")]
    assert s.start_failed("a", None, 1.0) == [Start("a")]  # the aborted start's report
    assert s.ready("a", 2.0) == [Grant(1, "a")]


def test_retiring_an_unknown_key_does_nothing() -> None:
    assert Scheduler(max_sidecars=1, queue_timeout=60).retire("nope", 0.0) == []


def _meta(**kw: object) -> GGUFMeta:
    return GGUFMeta(version=3, **kw)  # type: ignore[arg-type]


def test_embedding_models_get_embedding_and_context_is_capped_at_training() -> None:
    base = ("-c", "32768", "-ngl", "999")
    emb = ModelEntry("e", Path("e.gguf"), meta=_meta(architecture="bert", context_length=512))
    assert model_defaults(emb, model_base_args(ModelEntry("x", Path("x")), base)) == (
        "--embedding", "--ctx-size", "512",
    )  # fmt: skip
    merged = model_base_args(emb, base)
    assert "--embedding" in merged
    assert merged[merged.index("--ctx-size") + 1] == "512"


def test_rerankers_projectors_and_a_context_within_training() -> None:
    rr = ModelEntry(
        "r", Path("r.gguf"), mmproj=Path("/m/mmproj-F16.gguf"),
        meta=_meta(architecture="qwen3", pooling="rank", context_length=65536),
    )  # fmt: skip
    merged = model_base_args(rr, ("-c", "32768"))
    assert "--rerank" in merged
    assert merged[merged.index("--mmproj") + 1] == "/m/mmproj-F16.gguf"
    assert merged[merged.index("--ctx-size") + 1] == "32768"  # trained for more: unchanged


def test_no_metadata_or_ctx_zero_changes_nothing() -> None:
    plain = ModelEntry("p", Path("p.gguf"))
    assert model_defaults(plain, ("--ctx-size", "32768")) == ()
    text = ModelEntry("t", Path("t.gguf"), meta=_meta(architecture="llama", context_length=2048))
    assert model_defaults(text, ("--ctx-size", "0")) == ()  # 0 already means "trained"
    assert model_defaults(text, ()) == ()
