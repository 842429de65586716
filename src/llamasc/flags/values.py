"""Type and range checks for flag values.

Every value-taking flag gets a check. Each rule has two ranges: what llama-server itself
accepts (applied to everyone, operators included) and a tighter one for untrusted callers, so
an HTTP client cannot ask for absurd resources. The overrides below cover the flags that
matter; the rest fall back to generic ranges by value kind (ints -1..1,048,576 and floats
-1e6..1e6 for untrusted callers).

Decisions worth knowing:

* ``-c/--ctx-size`` is capped at 1,048,576 tokens (1 Mi) for untrusted callers: no current
  model trains beyond that, and 0 ("the model's own context") stays allowed. The same cap
  holds for ``--kv-unified-per-slot`` times the slot count (see :func:`check_combination`).
* ``-cram/--cache-ram`` (host-RAM prompt cache, MiB) is 0..16384 for untrusted callers;
  -1 (no limit) is for operators.
* ``--parallel`` 1..64 for untrusted callers (llama.cpp also takes -1 = auto; 0 is an error).
* ``--prio`` is capped at 2 (3 = realtime scheduling) and ``--poll`` at 50 (its default; 100
  busy-waits a core) for untrusted callers.
* ``-lm/--load-mode mlock`` and ``mmap+mlock`` pin the model in RAM: operators only.
* ``-lv/--verbosity`` must stay >= 3 for everyone: below that llama-server hides the
  "listening on" line the pool waits for.
* Strings have length caps; JSON values must parse; ``--override-kv``, ``--logit-bias``,
  ``--samplers`` and friends are shape-checked with the same grammar llama.cpp parses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from llamasc.flags.rules import (
    INT32,
    LONG_TEXT_CAP,
    STRING_CAP,
    UNTRUSTED_FLOAT,
    UNTRUSTED_INT,
    Check,
    EnumRule,
    Explained,
    ListRule,
    TextRule,
    float_rule,
    int_rule,
    truthy_rule,
)
from llamasc.flags.table import FlagSpec

MAX_CTX = 1_048_576
MAX_CACHE_RAM_MIB = 16 * 1024  # host-RAM prompt cache; -1 (unlimited) is for operators

_PROB = float_rule(0.0, 1.0)
_NONNEG_FLOAT = float_rule(0.0, 3.4e38, 0.0, 1e6)
_THREADS = int_rule(-1, 1024)
_PRIO = int_rule(-1, 3, -1, 2)
_PRIO_POS = int_rule(0, 3, 0, 2)
_BIT = int_rule(0, 1)
_LAYERS = int_rule(-2, 100_000, -1, 100_000, words=("auto", "all"))
_COUNT = int_rule(0, INT32[1], 0, 100_000)
_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
_SAMPLER_NAMES = ("dry", "top_k", "top_p", "top_n_sigma", "typ_p", "min_p", "temperature",
                  "xtc", "infill", "penalties", "adaptive_p")  # fmt: skip
# llama.cpp also accepts each underscored name kebab-cased and with no separator, plus 3 aliases.
_SAMPLERS = tuple(
    {v for n in _SAMPLER_NAMES for v in (n, n.replace("_", "-"), n.replace("_", ""))}
    | {"nucleus", "temp", "typ"}
)
_DEVICE = re.compile(r"none|[A-Za-z0-9_.:-]{1,64}")
_DEVICES = re.compile(r"none|[A-Za-z0-9_.:-]{1,64}(,[A-Za-z0-9_.:-]{1,64}){0,15}")
_KV_ITEM = r"[A-Za-z0-9_.\-]{1,127}=(?:int|float|bool|str):[^,]{0,127}"
_TENSOR_ITEM = r"[^=,]{1,256}=[A-Za-z0-9_:+\-]{1,64}"

OVERRIDES: dict[str, Check] = {
    # context, memory, batching (class D)
    "--ctx-size": int_rule(0, INT32[1], 0, MAX_CTX),
    "--kv-unified-per-slot": int_rule(0, INT32[1], 0, MAX_CTX),
    "--predict": int_rule(-1, INT32[1], -1, MAX_CTX),
    "--batch-size": int_rule(1, 65536),
    "--ubatch-size": int_rule(1, 65536),
    "--parallel": int_rule(-1, 4096, 1, 64, exclude=(0,)),
    "--ctx-checkpoints": int_rule(0, INT32[1], 0, 256),
    "--checkpoint-min-step": int_rule(0, INT32[1], 0, MAX_CTX),
    "--cache-ram": int_rule(-1, INT32[1], 0, MAX_CACHE_RAM_MIB),
    "--keep": int_rule(-1, INT32[1], -1, MAX_CTX),
    "--yarn-orig-ctx": int_rule(0, INT32[1], 0, MAX_CTX),
    "--fit-ctx": int_rule(0, INT32[1], 0, MAX_CTX),
    "--fit-target": ListRule(int_rule(0, INT32[1], 0, 1_048_576), what="target"),
    "--image-min-tokens": int_rule(0, INT32[1], 0, MAX_CTX),
    "--image-max-tokens": int_rule(0, INT32[1], 0, MAX_CTX),
    "--mtmd-batch-max-tokens": int_rule(0, INT32[1], 0, MAX_CTX),
    # CPU scheduling
    "--threads": _THREADS,
    "--threads-batch": _THREADS,
    "--threads-http": int_rule(-1, 1024, -1, 256),
    "--spec-draft-threads": _THREADS,
    "--spec-draft-threads-batch": _THREADS,
    "--prio": _PRIO,
    "--prio-batch": _PRIO_POS,
    "--spec-draft-prio": _PRIO_POS,
    "--spec-draft-prio-batch": _PRIO_POS,
    "--poll": int_rule(0, 100, 0, 50),
    "--poll-batch": _BIT,
    "--spec-draft-poll": _BIT,
    "--spec-draft-poll-batch": _BIT,
    "--cpu-strict": _BIT,
    "--cpu-strict-batch": _BIT,
    "--spec-draft-cpu-strict": _BIT,
    "--spec-draft-cpu-strict-batch": _BIT,
    "--cpu-mask": TextRule(256, re.compile(r"(0x)?[0-9a-fA-F]{1,254}"), "a hex CPU mask"),
    "--cpu-range": TextRule(32, re.compile(r"[0-9]{1,5}-[0-9]{1,5}"), "lo-hi"),
    # placement and loading
    "--gpu-layers": _LAYERS,
    "--spec-draft-ngl": _LAYERS,
    "--main-gpu": int_rule(-1, 1024, 0, 1024),
    "--n-cpu-moe": _COUNT,
    "--n-cpu-ffn": _COUNT,
    "--spec-draft-n-cpu-moe": _COUNT,
    "--tensor-split": ListRule(float_rule(0.0, 1e6), sep="[,/]", what="proportion"),
    "--device": TextRule(256, _DEVICES, "none or comma-separated device names"),
    "--spec-draft-device": TextRule(256, _DEVICES, "none or comma-separated device names"),
    "--mmproj-device": TextRule(64, _DEVICE, "none or one device name"),
    "--override-tensor": TextRule(
        1024, re.compile(f"{_TENSOR_ITEM}(,{_TENSOR_ITEM})*"), "<regex>=<buffer type>,..."
    ),
    "--spec-draft-override-tensor": TextRule(
        1024, re.compile(f"{_TENSOR_ITEM}(,{_TENSOR_ITEM})*"), "<regex>=<buffer type>,..."
    ),
    "--load-mode": EnumRule(
        ("auto", "none", "mmap", "mlock", "mmap+mlock", "dio"), ("mlock", "mmap+mlock")
    ),
    "--flash-attn": truthy_rule(auto=True),
    "--reasoning": truthy_rule(auto=True),
    "--log-colors": truthy_rule(auto=True),
    "--fit": truthy_rule(auto=False),
    "--numa": EnumRule(("distribute", "isolate", "numactl")),
    "--verbosity": Explained(
        int_rule(3, 5), "below 3 llama-server hides the line the pool waits for to see it is ready"
    ),
    # sampling (class E)
    "--seed": int_rule(-1, 2**32 - 1),
    "--temp": float_rule(0.0, 3.4e38, 0.0, 100.0),
    "--top-k": int_rule(0, INT32[1], 0, 1_000_000),
    "--top-p": _PROB,
    "--min-p": _PROB,
    "--typical": _PROB,
    "--xtc-probability": _PROB,
    "--xtc-threshold": _PROB,
    "--top-nsigma": float_rule(-1.0, 3.4e38, -1.0, 1000.0),
    "--repeat-last-n": int_rule(-1, INT32[1], -1, MAX_CTX),
    "--repeat-penalty": float_rule(0.0, 3.4e38, 0.0, 100.0),
    "--presence-penalty": float_rule(-3.4e38, 3.4e38, -100.0, 100.0),
    "--frequency-penalty": float_rule(-3.4e38, 3.4e38, -100.0, 100.0),
    "--dry-multiplier": _NONNEG_FLOAT,
    "--dry-base": _NONNEG_FLOAT,
    "--dry-allowed-length": int_rule(0, INT32[1], 0, MAX_CTX),
    "--dry-penalty-last-n": int_rule(-1, INT32[1], -1, MAX_CTX),
    "--dry-sequence-breaker": TextRule(256),
    "--dynatemp-range": _NONNEG_FLOAT,
    "--dynatemp-exp": _NONNEG_FLOAT,
    "--mirostat": int_rule(0, 2),
    "--mirostat-lr": _NONNEG_FLOAT,
    "--mirostat-ent": _NONNEG_FLOAT,
    "--logit-bias": TextRule(
        64,
        re.compile(r"[0-9]{1,10}[+-](?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"),
        "TOKEN_ID+BIAS or TOKEN_ID-BIAS",
    ),
    "--samplers": ListRule(
        EnumRule(tuple(sorted(_SAMPLERS)), case_insensitive=True), sep=";", what="sampler"
    ),
    "--sampler-seq": TextRule(64, re.compile(r"[dkypsmtxiea]{1,64}"), "letters from dkypsmtxiea"),
    "--reverse-prompt": TextRule(1024),
    "--cache-type-k": EnumRule(_CACHE_TYPES),
    "--cache-type-v": EnumRule(_CACHE_TYPES),
    "--spec-draft-type-k": EnumRule(_CACHE_TYPES),
    "--spec-draft-type-v": EnumRule(_CACHE_TYPES),
    "--slot-prompt-similarity": _PROB,
    "--defrag-thold": float_rule(-1.0, 1.0),
    "--rope-scale": float_rule(0.0, 3.4e38, 0.0, 1024.0),
    "--rope-freq-base": float_rule(0.0, 3.4e38, 0.0, 1e10),
    "--rope-freq-scale": float_rule(0.0, 3.4e38, 0.0, 1024.0),
    "--video-fps": float_rule(0.0, 3.4e38, 0.0, 240.0),
    "--cache-reuse": int_rule(0, INT32[1], 0, MAX_CTX),
    # chat, reasoning, constrained output
    "--chat-template": TextRule(LONG_TEXT_CAP),
    "--chat-template-kwargs": TextRule(LONG_TEXT_CAP, json_kind=dict),
    "--grammar": TextRule(LONG_TEXT_CAP),
    "--json-schema": TextRule(LONG_TEXT_CAP, json_kind=object),
    "--override-kv": TextRule(
        4096, re.compile(f"{_KV_ITEM}(,{_KV_ITEM})*"), "KEY=TYPE:VALUE,... (int|float|bool|str)"
    ),
    "--reasoning-effort": TextRule(32, re.compile(r"[A-Za-z0-9_-]{1,32}"), "a word like high"),
    "--reasoning-budget": int_rule(-1, INT32[1], -1, MAX_CTX),
    "--reasoning-budget-message": TextRule(1024),
    # speculative decoding
    "--spec-draft-n-max": int_rule(0, INT32[1], 0, 256),
    "--spec-draft-n-min": int_rule(0, INT32[1], 0, 256),
    "--spec-draft-p-split": _PROB,
    "--spec-draft-p-min": _PROB,
    "--spec-synth-len": float_rule(0.0, 3.4e38, 0.0, 1024.0),
    "--spec-synth-rates": ListRule(_PROB, what="rate"),
    "--control-vector-layer-range": int_rule(-1, INT32[1], -1, 100_000),
}

_GENERIC_INT = int_rule(INT32[0], INT32[1], *UNTRUSTED_INT)
_GENERIC_FLOAT = float_rule(-3.4e38, 3.4e38, *UNTRUSTED_FLOAT)
_TSV_RANGE = re.compile(r"(-?[0-9]+)\.\.(-?[0-9]+)")
_TSV_SET = re.compile(r"-?[0-9]+(,-?[0-9]+)*")
_TSV_MIN = re.compile(r">=(-?[0-9]+)")


def _int_from_tsv(spec: FlagSpec) -> Check:
    """Integer range from the TSV's enum column (``0..1024``, ``0,1``, ``>=1``)."""
    text = spec.enum_values.replace(" ", "")
    if m := _TSV_RANGE.fullmatch(text):
        return int_rule(int(m.group(1)), int(m.group(2)))
    if _TSV_SET.fullmatch(text):
        nums = [int(x) for x in text.split(",")]
        return int_rule(min(nums), max(nums))
    if m := _TSV_MIN.fullmatch(text):
        return int_rule(int(m.group(1)), INT32[1], int(m.group(1)), UNTRUSTED_INT[1])
    return _GENERIC_INT


def _enum_words(spec: FlagSpec) -> tuple[str, ...]:
    base = spec.enum_values.split("(")[0]
    return tuple(w.strip() for w in base.split(",") if w.strip())


def _by_kind(spec: FlagSpec) -> Check | None:
    kind = spec.value_kind
    if kind == "int":
        return _int_from_tsv(spec)
    if kind == "float":
        return _GENERIC_FLOAT
    if kind == "int int":
        return _GENERIC_INT
    if kind == "enum":
        words = _enum_words(spec)
        if "also" in spec.enum_values:
            return truthy_rule(auto="auto" in words)
        return EnumRule(words)
    if kind == "enum-list":
        return ListRule(EnumRule(_enum_words(spec)))
    if kind == "int-list":
        return ListRule(_GENERIC_INT)
    if kind == "float-list":
        return ListRule(_GENERIC_FLOAT, sep="[,/]")
    if kind == "json":
        return TextRule(LONG_TEXT_CAP, json_kind=object)
    if kind in ("device", "device-list"):
        return TextRule(256, _DEVICES, "none or comma-separated device names")
    if kind in ("unknown", "flag", "bool-flag"):
        return None
    # strings, string lists, paths, urls, hosts, secrets: bounded, non-empty checked elsewhere
    return TextRule(STRING_CAP)


def rule_for(spec: FlagSpec) -> Check | None:
    """The value check of ``spec`` (None for switches and options of unknown kind)."""
    if spec.arity == 0:
        return None
    rule = OVERRIDES.get(spec.canonical)
    return rule if rule is not None else _by_kind(spec)


def check_values(spec: FlagSpec, values: Iterable[str], trusted: bool) -> str | None:
    """Why ``values`` are refused for ``spec``, or None when they are fine."""
    rule = rule_for(spec)
    if rule is None:
        return None
    for value in values:
        if (why := rule(value, trusted)) is not None:
            return why
    return None


def check_combination(values: dict[str, tuple[str, ...]], trusted: bool) -> dict[str, str]:
    """Problems that only show across flags, keyed by the canonical name to blame.

    ``values`` maps canonical names to their last values. Without ``-c``, llama-server sizes
    the KV cache as slots x ``--kv-unified-per-slot`` (4 slots when ``-np`` is auto), which
    would sidestep the context cap.
    """
    if trusted or "--ctx-size" in values or "--kv-unified-per-slot" not in values:
        return {}
    try:
        per_slot = int(values["--kv-unified-per-slot"][0])
        slots = int(values.get("--parallel", ("-1",))[0])
    except (ValueError, IndexError):
        return {}  # the per-flag checks already report unparseable numbers
    slots = slots if slots > 0 else 4
    if per_slot * slots <= MAX_CTX:
        return {}
    return {
        "--kv-unified-per-slot": (
            f"{per_slot} per slot x {slots} slots = {per_slot * slots} tokens of context, "
            f"over the {MAX_CTX} allowed for untrusted callers (set -c, or fewer per slot)"
        )
    }


__all__ = ["MAX_CTX", "OVERRIDES", "check_combination", "check_values", "rule_for"]
