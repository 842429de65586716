from __future__ import annotations

import itertools

import pytest

from llamasc.config import naming


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("Qwen3-VL-32B-Instruct-Q4_K_M", "qwen3-vl-32b-instruct:q4_k_m"),
        ("SmolLM2-135M-Instruct.Q4_1", "smollm2-135m-instruct:q4_1"),
        ("gemma-3-270m-it-qat-Q4_0", "gemma-3-270m-it-qat:q4_0"),
        ("Big-Model-Q8_0-00001-of-00003", "big-model:q8_0"),
        ("nomic-embed-text-v1.5.f16", "nomic-embed-text-v1.5:f16"),
        ("GLM-4.5-Air-UD-Q4_K_XL", "glm-4.5-air-ud:q4_k_xl"),
        ("model-IQ2_XXS", "model:iq2_xxs"),
        ("model-BF16", "model:bf16"),
        ("plain", "plain"),
    ],
)
def test_model_id_is_name_and_quant_from_the_file_name(stem: str, expected: str) -> None:
    assert naming.model_id(stem) == expected


def test_model_id_takes_the_quant_from_metadata_when_the_name_has_none() -> None:
    assert naming.model_id("Llama-3.2-1B-Instruct", "Q5_K_M") == "llama-3.2-1b-instruct:q5_k_m"


def test_hf_ids_are_llama_cpp_router_ids() -> None:
    assert naming.hf_model_id("unsloth/Qwen3-8B-GGUF", "Qwen3-8B-Q4_K_M") == (
        "unsloth/Qwen3-8B-GGUF:Q4_K_M"
    )
    assert naming.hf_model_id("o/r", "Model-q8_0-00001-of-00002") == "o/r:Q8_0"
    assert naming.hf_model_id("o/r", "model") == "o/r"


def test_split_names() -> None:
    s = naming.split_name("M-Q4_K_M-00002-of-00003")
    assert (s.prefix, s.no, s.count) == ("M-Q4_K_M", 2, 3)
    assert s.part_name(3) == "M-Q4_K_M-00003-of-00003.gguf"
    assert naming.split_name("M").count == 1


@pytest.mark.parametrize("name", ["mtp-x", "eagle3-x", "dflash-x", "dspark-x", "Draft-x"])
def test_drafts_named_as_such(name: str) -> None:
    assert naming.is_draft_name(name)
    assert not naming.is_draft_name("drafting-model")


_RANKED = ["BF16", "F16", "F32"]


@pytest.mark.parametrize(
    "present",
    [
        subset
        for n in range(1, 4)
        for subset in itertools.chain.from_iterable(
            itertools.permutations(c) for c in itertools.combinations(_RANKED, n)
        )
    ],
)
def test_projector_preference_bf16_then_f16_then_f32(present: tuple[str, ...]) -> None:
    """Every combination and order of BF16/F16/F32 projectors in a folder."""
    stems = [(f"mmproj-model-{tag}", None) for tag in present]
    best = naming.best_projector(stems)
    assert best is not None
    expected = min(present, key=_RANKED.index)
    assert stems[best][0] == f"mmproj-model-{expected}"


def test_projector_preference_uses_metadata_and_ranks_others_last() -> None:
    stems = [("mmproj-a", "Q8_0"), ("mmproj-b", "F32"), ("mmproj-c", None)]
    assert naming.best_projector(stems) == 1
    assert naming.best_projector([]) is None


def test_colliding_ids_are_all_tie_broken_with_a_warning() -> None:
    ids, warnings = naming.resolve_ids([["x", "a/x"], ["y", "b/y"], ["x", "b/x"]])
    assert ids == ["a/x", "y", "b/x"]
    assert len(warnings) == 1
    assert "'x'" in warnings[0]
    assert "'a/x'" in warnings[0]
    assert "'b/x'" in warnings[0]


def test_ids_taken_elsewhere_are_not_reused_and_last_resort_is_numbered() -> None:
    ids, warnings = naming.resolve_ids([["x", "x"], ["x", "x"]], taken=["x"])
    assert ids == ["x~2", "x~3"]
    assert len(set(ids)) == 2
    assert warnings
