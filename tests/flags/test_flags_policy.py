"""Which flags each policy refuses, in every spelling, and why."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llamasc.flags import FlagPolicy, load_default_table, validate_flags

TABLE = load_default_table()

# (reason fragment, every spelling of the flags in the group), written out by hand from the
# task's rules and llama-server's --help, so a spelling missed by the code shows up here.
UNTRUSTED_DENIED: list[tuple[str, list[str]]] = [
    ("decides where each llama-server listens",
     ["--port", "--host", "--reuse-port", "--path", "--api-prefix"]),
    ("model comes from the request",
     ["-m", "--model", "-a", "--alias", "--tags", "-hf", "-hfr", "--hf-repo", "-hff",
      "--hf-file", "-hft", "--hf-token", "-mu", "--model-url", "-dr", "--docker-repo"]),
    ("authentication and TLS",
     ["--api-key", "--api-key-file", "--ssl-key-file", "--ssl-cert-file"]),
    ("router mode",
     ["--models-dir", "--models-preset", "--models-max", "--models-autoload",
      "--no-models-autoload"]),
    ("reads llama-server's log",
     ["--log-disable", "--log-file", "--log-jsonl", "--no-log-jsonl", "--log-prefix",
      "--no-log-prefix", "--log-timestamps", "--no-log-timestamps", "--log-colors", "-v",
      "--verbose", "--log-verbose"]),
    ("timeouts, idle unloading and network policy",
     ["-to", "--timeout", "--sse-ping-interval", "--sleep-idle-seconds", "--offline"]),
    ("relies on these endpoints", ["--slots", "--no-slots", "--metrics", "--props"]),
    ("web UI",
     ["--ui", "--webui", "--no-ui", "--no-webui", "--ui-config", "--webui-config",
      "--ui-config-file", "--webui-config-file", "--ui-mcp-proxy", "--webui-mcp-proxy",
      "--no-ui-mcp-proxy", "--no-webui-mcp-proxy"]),
    ("CORS",
     ["--cors-origins", "--cors-methods", "--cors-headers", "--cors-credentials",
      "--no-cors-credentials"]),
    ("changes the server's role", ["--embedding", "--embeddings", "--rerank", "--reranking"]),
    ("reads files on the server host",
     ["-mm", "--mmproj", "-md", "--spec-draft-model", "--model-draft", "--lora",
      "--lora-scaled", "--control-vector", "--control-vector-scaled", "--grammar-file", "-jf",
      "--json-schema-file", "--chat-template-file", "--media-path", "-lcs",
      "--lookup-cache-static", "-lcd", "--lookup-cache-dynamic"]),
    ("writes files on the server host", ["--slot-save-path", "--log-prompts-dir"]),
    ("runs programs", ["--video-ffmpeg-dir"]),
    ("remote RPC servers", ["--rpc"]),
    ("run tools or spawn processes",
     ["--tools", "--tools-runtime", "--mcp-servers-config", "--mcp-servers-json", "-ag",
      "--agent", "-no-ag", "--no-agent"]),
    ("downloads files",
     ["-mmu", "--mmproj-url", "--mmproj-auto", "--no-mmproj", "--no-mmproj-auto", "-hfd",
      "-hfrd", "--hf-repo-draft", "--spec-draft-hf"]),
    ("built-in preset",
     ["--embd-gemma-default", "--fim-qwen-1.5b-default", "--fim-qwen-3b-default",
      "--fim-qwen-7b-default", "--fim-qwen-7b-spec", "--fim-qwen-14b-spec",
      "--fim-qwen-30b-default", "--gpt-oss-20b-default", "--gpt-oss-120b-default",
      "--vision-gemma-4b-default", "--vision-gemma-12b-default"]),
    ("prints something and exits",
     ["-h", "--help", "--usage", "--version", "-cl", "--cache-list", "--completion-bash",
      "--list-devices"]),
    ("removed",
     ["--draft", "--draft-n", "--draft-max", "--draft-min", "--draft-n-min",
      "--spec-ngram-size-n", "--spec-ngram-size-m", "--spec-ngram-min-hits", "--mmap",
      "--no-mmap", "--mlock"]),
    ("operator only",
     ["--numa", "-C", "--cpu-mask", "-Cr", "--cpu-range", "--cpu-strict", "-Cb",
      "--cpu-mask-batch", "-Crb", "--cpu-range-batch", "--cpu-strict-batch", "-Cd",
      "--spec-draft-cpu-mask", "--cpu-mask-draft", "-Crd", "--spec-draft-cpu-range",
      "--cpu-range-draft", "--spec-draft-cpu-strict", "--cpu-strict-draft", "-Cbd",
      "--spec-draft-cpu-mask-batch", "--spec-draft-cpu-strict-batch", "--check-tensors"]),
    ("not a llama-server option",
     ["-p", "--prompt", "-f", "--file", "-sys", "-i", "--interactive", "-cnv",
      "--no-conversation", "--image", "--chunks"]),
]  # fmt: skip

CASES = [(frag, name) for frag, names in UNTRUSTED_DENIED for name in names]


def _with_value(name: str) -> list[str]:
    spec = TABLE.get(name)
    assert spec is not None, name
    return [name, *(["1"] * spec.arity)]


@pytest.mark.parametrize(("fragment", "name"), CASES)
def test_untrusted_callers_are_refused_with_a_reason(fragment: str, name: str) -> None:
    v = validate_flags(["--top-k", "20", *_with_value(name)])
    assert not v.ok
    assert v.canonical == ()
    assert len(v.problems) == 1
    assert v.problems[0].startswith(f"{name}: ")
    assert fragment in v.problems[0]
    bad = [i for i in v.items if not i.ok]
    assert [i.flag for i in bad] == [name]
    assert [i.flag for i in v.items if i.ok] == ["--top-k"]
    # the same refusal for the underscore spelling and the attached `=value` form
    spec = TABLE.get(name)
    assert spec is not None
    spelled = name.replace("-", "_").replace("_", "-", 2) if name.startswith("--") else name
    tokens = [f"{spelled}=1"] if spec.arity == 1 else [spelled, *(["1"] * spec.arity)]
    other = validate_flags(tokens)
    assert not other.ok
    assert fragment in other.problems[0]


@pytest.mark.parametrize(
    "tokens",
    [
        ["--port=8080"],
        ["--api_key", "k"],
        ["--models_dir", "/x"],
        ["--log_disable"],
        ["--no_webui"],
        ["--hf_repo=a/b"],
        ["--Port", "1"],  # llama.cpp matches case-sensitively: unknown, still refused
        [" --port", "1"],
        ["--port ", "1"],
        ["--port"],  # no value: still reported as pool-owned first
    ],
)
def test_every_spelling_form_of_a_denied_flag_is_refused(tokens: list[str]) -> None:
    v = validate_flags(tokens)
    assert not v.ok
    assert v.canonical == ()


def test_the_tsv_classes_agree_with_the_policy() -> None:
    """Every spelling of a class A/B/C/X/R flag is refused to untrusted callers.

    Independent of the hand-written groups: the security classes come from the TSV.
    Exceptions are deliberate: -lv is value-checked (>= 3).
    """
    exceptions = {"--verbosity"}
    for spec in TABLE.server_specs():
        if spec.canonical in exceptions or not spec.classes & set("ABCXR"):
            continue
        for name in spec.names:
            v = validate_flags([name, *(["1"] * spec.arity)])
            assert not v.ok, f"{name} ({sorted(spec.classes)}) was accepted"


def test_class_e_flags_are_never_refused_as_flags() -> None:
    """A class-E flag may fail on its value, never on the policy."""
    for spec in TABLE.server_specs():
        if spec.classes != frozenset({"E"}):
            continue
        v = validate_flags([spec.canonical, *(["1"] * spec.arity)])
        for item in v.items:
            assert "owned" not in item.reason, item
            assert "operator" not in item.reason, item


OPERATOR_OK = [
    "-lm mlock",
    "--load-mode mmap+mlock",
    "--prio 3",
    "--poll 100",
    "-c 2000000",
    "-np -1",
    "--numa distribute",
    "--check-tensors",
    "-C ff --cpu-strict 1",
    "-md /models/draft.gguf",
    "--spec-draft-model /models/draft.gguf --spec-type draft-simple",
    "--lora /loras/a.gguf",
    "--grammar-file /g.gbnf",
    "--threads-http 512",
]


@pytest.mark.parametrize("text", OPERATOR_OK)
def test_operator_mode_allows_class_d_freely_and_file_flags(text: str) -> None:
    assert not validate_flags(text).ok
    v = validate_flags(text, FlagPolicy.operator())
    assert v.ok, v.problems


OPERATOR_DENIED = [
    ("--port 8080", "listens"),
    ("--host 0.0.0.0", "listens"),
    ("-m /models/x.gguf", "model comes from"),
    ("--alias x", "model comes from"),
    ("--api-key k", "API keys"),
    ("--ssl-key-file /k.pem", "API keys"),
    ("--api-prefix /x", "routes"),
    ("--models-dir /m", "router"),
    ("-lv 2", "ready"),
    ("--help", "exits"),
    ("--draft 3", "removed"),
    ("--no-mmap", "removed"),
    ("--fim-qwen-7b-default", "preset"),
    ("-c -1", "between"),
]


@pytest.mark.parametrize(("text", "fragment"), OPERATOR_DENIED)
def test_operator_mode_still_refuses_pool_owned_network_and_broken(
    text: str, fragment: str
) -> None:
    v = validate_flags(text, FlagPolicy.operator())
    assert not v.ok
    assert fragment in v.problems[0]


@pytest.mark.parametrize(
    ("text", "allow"),
    [
        ("--embedding", {"--embeddings"}),
        ("--rerank", {"--rerank"}),
        ("--rpc 127.0.0.1:50052", {"--rpc"}),
        ("--lora /x.gguf", {"--lora"}),
        ("--numa isolate", {"--numa"}),
    ],
)
def test_allow_lifts_class_a_b_and_role_refusals(text: str, allow: set[str]) -> None:
    assert not validate_flags(text).ok
    assert validate_flags(text, FlagPolicy.untrusted(allow=allow)).ok


@pytest.mark.parametrize(
    "text", ["--port 1", "-m x", "--api-key k", "--help", "--draft 2", "--api-prefix /x"]
)
def test_allow_never_lifts_pool_owned_exit_or_removed(text: str) -> None:
    name = text.split(maxsplit=1)[0]
    for policy in (FlagPolicy.untrusted(allow={name}), FlagPolicy.operator(allow={name})):
        assert not validate_flags(text, policy).ok


def test_deny_refuses_extra_flags_in_any_spelling() -> None:
    policy = FlagPolicy.operator(deny={"--ctx-size", "-ngl"})
    for text in ("-c 512", "--ctx_size 512", "--n-gpu-layers 3", "--gpu-layers=3"):
        v = validate_flags(text, policy)
        assert not v.ok
        assert "refused by this pool's flag policy" in v.problems[0]
    assert validate_flags("--top-k 3", policy).ok


def test_default_policy_is_untrusted() -> None:
    assert FlagPolicy().mode == "untrusted"
    assert not FlagPolicy.untrusted().trusted
    assert FlagPolicy.operator().trusted
    assert not validate_flags("-lm mlock").ok


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "root"},
        {"unknown": 1},
        {"allow": ["ctx-size"]},
        {"path_roots": {"--lora": ["relative/dir"]}},
        {"path_roots": {"lora": ["/srv"]}},
    ],
)
def test_policy_rejects_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        FlagPolicy.model_validate(kwargs)
