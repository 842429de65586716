"""llama-swap's request filters applied to a body (stripParams, setParams, setParamsByID
keyed by the name the client asked for, useModelName) and its includeAliasesInList."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamasc.config import ModelCatalog, ModelEntry
from llamasc.config.settings import ModelSettings
from llamasc.errors import RequestError
from llamasc.server.filters import BodyFilters, ModelFilter


def _apply(f: ModelFilter, requested: str, body: dict[str, object]) -> dict[str, object]:
    return dict(json.loads(f.apply(requested, json.dumps(body).encode())))


def test_strip_then_set_then_set_by_the_requested_name() -> None:
    f = ModelFilter(
        strip=("top_p", "top_k"),
        set_params={"temperature": 0.2, "top_k": 5},
        by_id={"coder-fast": {"temperature": 0.0}},
    )
    body = {"model": "coder", "top_p": 0.9, "top_k": 40, "messages": []}
    assert _apply(f, "coder", body) == {
        "model": "coder",
        "messages": [],
        "temperature": 0.2,
        "top_k": 5,  # stripped from the client, then set by the operator
    }
    assert _apply(f, "coder-fast", body)["temperature"] == 0.0  # by id wins over setParams


def test_model_is_never_stripped_and_use_model_name_renames_it() -> None:
    f = ModelFilter(strip=("model", "seed"), model_name="HuggingFaceTB/SmolLM2")
    out = _apply(f, "smol", {"model": "smol", "seed": 1})
    assert out == {"model": "HuggingFaceTB/SmolLM2"}
    assert _apply(ModelFilter(strip=("model",)), "smol", {"model": "smol"}) == {"model": "smol"}


def test_a_body_that_is_not_an_object_passes_and_bad_json_is_a_request_error() -> None:
    f = ModelFilter(strip=("x",))
    assert f.apply("m", b"[1, 2]") == b"[1, 2]"
    with pytest.raises(RequestError, match="not valid JSON"):
        f.apply("m", b"{nope")


def test_body_filters_find_a_model_by_its_alias_and_leave_others_alone() -> None:
    catalog = ModelCatalog.of(
        [ModelEntry("coder", Path("coder.gguf")), ModelEntry("other", Path("other.gguf"))]
    )
    catalog.aliases["coder-fast"] = "coder"
    settings = {
        "coder": ModelSettings.model_validate(
            {
                "filters": {
                    "strip_params": ["top_p"],
                    "set_params_by_id": {"coder-fast": {"temperature": 0.0}},
                }
            }
        ),
        "other": ModelSettings(),
    }
    filters = BodyFilters(catalog, settings)
    assert filters
    body = json.dumps({"model": "coder-fast", "top_p": 0.5}).encode()
    assert json.loads(filters.apply("coder-fast", body)) == {
        "model": "coder-fast",
        "temperature": 0.0,
    }
    untouched = json.dumps({"model": "other", "top_p": 0.5}).encode()
    assert filters.apply("other", untouched) is untouched  # no filter: not even re-serialised
    assert not BodyFilters(catalog, {"other": ModelSettings()})


def test_include_aliases_in_list_lists_each_alias_as_an_entry_of_its_own() -> None:
    from llamasc.config.swapfields import ModelSwapFields
    from llamasc.server.models import swap_listing

    extra = ModelSwapFields(aliases=("coder-fast", "c"), name="Coder", metadata={"size": "7B"})
    entry = {"id": "coder", "object": "model", "sidecars": []}
    assert swap_listing(dict(entry), extra, with_aliases=False) == []
    listed = swap_listing(dict(entry), extra, with_aliases=True)
    assert [e["id"] for e in listed] == ["coder-fast", "c"]
    assert all(e["name"] == "Coder" and e["meta"]["llamaswap"] == {"size": "7B"} for e in listed)
