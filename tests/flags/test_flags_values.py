"""Value checks: integers, floats, enums, lists, JSON and shapes, with untrusted ranges."""

from __future__ import annotations

import pytest

from llamasc.flags import FlagPolicy, load_default_table, validate_flags
from llamasc.flags.values import OVERRIDES, rule_for

ALLOWED = [
    "--top-k 20",
    "-c 8192",
    "-c 0",
    "-c 1048576",
    "-ngl 999",
    "-ngl auto",
    "-ngl all",
    "-ngl -1",
    "-np 1",
    "--parallel 64",
    "-fa on",
    "-fa auto",
    "-fa true",
    "-fa -1",
    "--flash-attn off",
    "--flash-attn disabled",
    "-ctk q8_0 -ctv q4_0",
    "-ctkd f16",
    "--spec-type ngram-mod,ngram-simple",
    "--spec-type none",
    "--temp 0.7",
    "--temp=0",
    "--temp .5",
    "--temp 1e-3",
    "--ctx_size 4096",
    "--n_gpu_layers 10",
    "--jinja",
    "--no-jinja",
    "-b 512 -ub 512",
    "-b 65536",
    "--threads -1",
    "-t 4 -tb 1024",
    "--prio 2",
    "--prio -1",
    "--poll 50",
    "--poll-batch 1",
    "-lm none",
    "-lm mmap",
    "--load-mode dio",
    "-lv 3",
    "--verbosity 5",
    "--chat-template chatml",
    "--chat-template-kwargs '{\"enable_thinking\": false}'",
    "--override-kv tokenizer.ggml.add_bos_token=bool:false,general.name=str:x",
    "--samplers 'top_k;top-p;temp;TOPK'",
    "--sampler-seq kpt",
    "-l 15043+1",
    "--logit-bias 15043-0.5",
    "-r '</s>'",
    "--dry-sequence-breaker none",
    "--reasoning-budget 0",
    "--reasoning-budget -1",
    "-rea off",
    "--reasoning-format deepseek",
    "--reasoning-effort high",
    "--seed 42",
    "--seed -1",
    "--seed 4294967295",
    "--control-vector-layer-range 1 10",
    "-dev none",
    "-dev CUDA0,CUDA1",
    "-ot 'blk\\.[0-9]+\\.ffn_.*=CPU'",
    "-sm layer",
    "-ts 3,1",
    "-ts 3/1",
    "-mg 0",
    "-fit on",
    "-fit false",
    "-cram 2048",
    "-cram 0",
    "--spec-draft-n-max 16",
    "--spec-ngram-mod-n-match 24",
    "--spec-ngram-simple-size-n 1024",
    "--spec-default",
    "--no-context-shift",
    "-kvu",
    "-no-kvu",
    "-nkvo",
    "-nr",
    "--swa-full",
    "-cmoe",
    "-ncmoe 4",
    '--json-schema \'{"type": "object"}\'',
    "--grammar 'root ::= \"a\"'",
    "--keep -1",
    "--n-predict -1",
    "-n 128",
    "--cache-reuse 256",
    "--pooling mean",
    "--rope-scaling yarn --rope-scale 2",
    "--top-p 0.95 --min-p 0.05",
    "--presence-penalty -0.5",
    "--frequency-penalty=-1",
    "--mirostat 2",
    "--fit-target 1024,2048",
    "--image-max-tokens 1024",
    "--cpu-moe",
    "-lzm auto",
    "--spec-draft-sampling greedy",
    "--embd-normalize 2",
]


@pytest.mark.parametrize("text", ALLOWED)
def test_sane_values_are_accepted_for_untrusted_callers(text: str) -> None:
    v = validate_flags(text)
    assert v.ok, v.problems
    assert v.canonical
    assert all(i.ok and i.reason == "ok" for i in v.items)


DENIED = [
    ("-c -1", "between 0 and 1048576"),
    ("-c 1048577", "for untrusted callers"),
    ("--ctx-size 999999999999", "between 0 and 1048576"),
    ("-c 12abc", "needs an integer"),
    ("-c ' 8'", "needs an integer"),
    ("-c 0x10", "needs an integer"),
    ("-c ''", "needs an integer"),
    ("--top-k -1", "between 0"),
    ("--top-k 1.5", "needs an integer"),
    ("-np 0", "does not accept 0"),
    ("-np 65", "between 1 and 64"),
    ("-np -1", "between 1 and 64"),
    ("-b 0", "between 1 and 65536"),
    ("-b 65537", "between 1 and 65536"),
    ("-ub 70000", "between 1 and 65536"),
    ("--threads -2", "between -1 and 1024"),
    ("--threads 1025", "between -1 and 1024"),
    ("--temp -1", "between 0 and 100"),
    ("--temp nan", "needs a number"),
    ("--temp inf", "needs a number"),
    ("--temp 1e999", "finite"),
    ("--temp 0.5x", "needs a number"),
    ("--top-p 1.5", "between 0 and 1"),
    ("--top-p -0.1", "between 0 and 1"),
    ("-fa yes", "must be one of"),
    ("-fa maybe", "must be one of"),
    ("-fa ON", "must be one of"),
    ("-ctk q3_k", "must be one of"),
    ("-ctk F16", "must be one of"),
    ("--spec-type bogus", "must be one of"),
    ("--spec-type ngram-mod,bogus", "'bogus'"),
    ("-ngl -2", "between -1"),
    ("-ngl many", "needs an integer (or auto, all)"),
    ("-ngl 100001", "between -1 and 100000"),
    ("-lm mlock", "operators only"),
    ("-lm mmap+mlock", "operators only"),
    ("-lm bogus", "must be one of"),
    ("--prio 3", "between -1 and 2"),
    ("--prio-batch 3", "between 0 and 2"),
    ("--poll 51", "between 0 and 50"),
    ("-lv 2", "ready"),
    ("-lv 6", "between 3 and 5"),
    ("--chat-template-kwargs '{bad'", "valid JSON"),
    ("--chat-template-kwargs '[1]'", "JSON object"),
    ("--json-schema '{'", "valid JSON"),
    ("--override-kv foo", "KEY=TYPE:VALUE"),
    ("--override-kv a=int", "KEY=TYPE:VALUE"),
    ("--override-kv a=complex:1", "KEY=TYPE:VALUE"),
    ("--samplers 'top_k;bogus'", "sampler 'bogus'"),
    ("--sampler-seq kpz", "dkypsmtxiea"),
    ("-l abc", "TOKEN_ID"),
    ("-l 15043*1", "TOKEN_ID"),
    ("--mirostat 3", "between 0 and 2"),
    ("--control-vector-layer-range 1", "needs 2 values"),
    ("--control-vector-layer-range a b", "needs an integer"),
    ("-sm diagonal", "must be one of"),
    ("-ts 1,x", "proportion 'x'"),
    ("-dev 'a b'", "device names"),
    ("-ot noequals", "<regex>=<buffer type>"),
    ("--reasoning-effort 'a b'", "a word"),
    ("--seed 4294967296", "between -1 and 4294967295"),
    ("--seed -2", "between -1"),
    ("-rea maybe", "must be one of"),
    ("--fit auto", "must be one of"),
    ("-lzm yes", "must be one of"),
    ("--spec-ngram-mod-n-match 0", "between 1 and 1024"),
    ("--spec-ngram-simple-size-n 1025", "between 1 and 1024"),
    ("--spec-ngram-map-k-min-hits 0", "between 1"),
    ("--cpu-moe=1", "takes no value"),
    ("--image-max-tokens 99999999", "for untrusted callers"),
    ("--rope-freq-base 1e11", "for untrusted callers"),
]


@pytest.mark.parametrize(("text", "fragment"), DENIED)
def test_bad_values_are_refused_with_the_range(text: str, fragment: str) -> None:
    v = validate_flags(text)
    assert not v.ok
    assert v.canonical == ()
    assert len(v.problems) == 1
    assert fragment in v.problems[0], v.problems


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("--kv-unified-per-slot 4096", True),
        ("--kv-unified-per-slot 262144", True),  # x 4 auto slots = 1 Mi
        ("--kv-unified-per-slot 262145", False),
        ("--kv-unified-per-slot 32768 -np 32", True),
        ("--kv-unified-per-slot 32768 -np 33", False),
        ("--kv-unified-per-slot 900000 -c 8192", True),  # -c sets the size instead
    ],
)
def test_per_slot_context_cannot_sidestep_the_context_cap(text: str, ok: bool) -> None:
    v = validate_flags(text)
    assert v.ok is ok, v.problems
    if not ok:
        assert v.problems[0].startswith("--kv-unified-per-slot: ")
        assert "over the 1048576 allowed" in v.problems[0]
    assert validate_flags(text, FlagPolicy.operator()).ok


def test_cache_ram_unlimited_is_for_operators() -> None:
    assert "between 0 and 16384" in validate_flags("-cram -1").problems[0]
    assert not validate_flags("-cram 16385").ok
    assert validate_flags("-cram -1", FlagPolicy.operator()).ok


def test_long_strings_are_capped() -> None:
    assert validate_flags(["--chat-template", "x" * 16384]).ok
    v = validate_flags(["--chat-template", "x" * 16385])
    assert "too long: 16385 characters (limit 16384)" in v.problems[0]
    assert not validate_flags(["-r", "x" * 1025]).ok
    assert validate_flags(["-r", "x" * 1025], FlagPolicy.operator()).ok


def test_every_value_of_a_repeated_flag_is_checked() -> None:
    """llama.cpp reads the last value, but a bad earlier one still fails its parse."""
    v = validate_flags("-ngl 20 -ngl many -c 512 -c 9999999")
    assert [i.ok for i in v.items] == [True, False, True, False]


def test_operator_gets_llama_cpp_ranges_not_untrusted_ones() -> None:
    op = FlagPolicy.operator()
    assert validate_flags("-c 2000000 --top-k 5000000 --temp 500", op).ok
    assert not validate_flags("-c 2147483648", op).ok  # beyond stoi
    assert not validate_flags("--prio 4", op).ok
    assert not validate_flags("-np 0", op).ok


def test_override_rules_name_real_canonical_flags() -> None:
    table = load_default_table()
    for name in OVERRIDES:
        spec = table.get(name)
        assert spec is not None, name
        assert spec.canonical == name, name
        assert spec.server, name


def test_every_value_taking_server_flag_has_a_check() -> None:
    for spec in load_default_table().server_specs():
        if spec.arity:
            assert rule_for(spec) is not None, spec.canonical
