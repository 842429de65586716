"""Who may pass which llama-server flag: the policy and the per-flag decisions.

Two modes:

* ``untrusted`` (HTTP clients): sampling/performance flags (class E) and resource flags
  (class D) within tight ranges. Refused: anything the pool owns (C), file access (A) unless
  ``path_roots`` allows it, network/tools/downloads (B), print-and-exit (X), removed (R).
* ``operator`` (trusted config: BASE_ARGS, per-model arguments, bench arms): every flag but
  the few the pool must own (host and port, the model and its alias, the API key and TLS,
  ``--api-prefix``, router mode's ``--models-*``, the built-in presets), print-and-exit (X)
  and removed (R) ones, with full llama.cpp ranges. A flag that turns off something llamasc
  relies on (``--no-slots``, ``--log-disable``) is accepted with a warning
  (:func:`operator_warning`) that says what stops working.

Class D decisions for untrusted callers: ``-c``, ``-ngl``, ``-np``, ``-b``/``-ub``, threads,
``-dev``, ``-ot``, ``-sm``/``-ts``/``-mg``, ``-fit*``, MoE offload are allowed with ranges
(agents legitimately tune them); ``--prio`` <= 2, ``--poll`` <= 50, ``-lm`` without mlock
(see :mod:`llamasc.flags.values`). ``--numa`` and CPU masks/ranges/strict placement are
refused (they act on CPUs/memory shared with other sidecars), and so is ``--check-tensors``
(it makes loading much slower for everyone).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llamasc.flags.table import FlagSpec

# Pool-owned groups: never accepted, whatever the mode or `allow` says.
_POOL_GROUPS: tuple[tuple[frozenset[str], str], ...] = (
    (
        frozenset({"--host", "--port", "--reuse-port", "--path", "--api-prefix"}),
        "owned by the pool: it decides where each llama-server listens",
    ),
    (
        frozenset(
            {
                "--model",
                "--alias",
                "--tags",
                "--model-url",
                "--docker-repo",
                "--hf-repo",
                "--hf-file",
                "--hf-token",
            }
        ),
        "owned by the pool: the model comes from the request's model id",
    ),
    (
        frozenset({"--api-key", "--api-key-file", "--ssl-key-file", "--ssl-cert-file"}),
        "owned by the pool: it handles authentication and TLS itself",
    ),
    (
        frozenset({"--cors-origins", "--cors-methods", "--cors-headers", "--cors-credentials"}),
        "owned by the pool: clients never reach llama-server directly, so CORS is its job",
    ),
    (
        frozenset({"--models-dir", "--models-preset", "--models-max", "--models-autoload"}),
        "owned by the pool: llama-server's router mode is not used inside the pool",
    ),
    (
        frozenset(
            {
                "--log-disable",
                "--log-file",
                "--log-jsonl",
                "--log-colors",
                "--log-prefix",
                "--log-timestamps",
                "--verbose",
            }
        ),
        "owned by the pool: it reads llama-server's log to see when it is ready",
    ),
    (
        frozenset({"--timeout", "--sse-ping-interval", "--sleep-idle-seconds", "--offline"}),
        "owned by the pool: it manages timeouts, idle unloading and network policy",
    ),
    (
        frozenset({"--slots", "--metrics", "--props"}),
        "owned by the pool: it relies on these endpoints being as it set them",
    ),
    (
        frozenset({"--ui", "--ui-config", "--ui-config-file", "--ui-mcp-proxy"}),
        "owned by the pool: llama-server's web UI is not exposed through it",
    ),
)
# What even a trusted operator may not set: the pool could not run or reach the child.
_OPERATOR_GROUPS: tuple[tuple[frozenset[str], str], ...] = (
    (
        frozenset({"--host", "--port", "--api-prefix"}),
        "owned by the pool: it decides where each llama-server listens and which routes it has",
    ),
    (
        frozenset({"--model", "--alias", "--model-url", "--docker-repo", "--hf-repo", "--hf-file"}),
        "owned by the pool: the model comes from the request's model id",
    ),
    (
        frozenset({"--api-key", "--api-key-file", "--ssl-key-file", "--ssl-cert-file"}),
        "owned by the pool: it talks plain HTTP to its children and checks API keys itself",
    ),
    (
        frozenset({"--models-dir", "--models-preset", "--models-max", "--models-autoload"}),
        "owned by the pool: it is the router; llama-server's router mode is not used inside it",
    ),
)
OPERATOR_OWNED: frozenset[str] = frozenset().union(*(g for g, _ in _OPERATOR_GROUPS))
# Accepted from an operator, with what stops working (or what it exposes) said once at start.
_OPERATOR_WARNINGS: dict[str, str] = {
    "--no-slots": "GET /slots answers 501 and slot save/restore (the prompt cache across "
    "swaps) stops working",
    "--log-disable": "llamasc no longer sees llama-server's log: readiness is found by polling "
    "only, and a failed start shows no stderr lines",
    "--log-file": "llama-server logs to that file instead of stderr: a failed start shows no "
    "stderr lines",
    "--embedding": "every sidecar serves embeddings only; /v1/embeddings already starts an "
    "embedding sidecar by itself when this is not set",
    "--rerank": "every sidecar serves reranking only; /v1/rerank already starts a reranking "
    "sidecar by itself when this is not set",
    "--tools": "every client of llamasc may run these tools on this host through /tools",
    "--agent": "every client of llamasc may run tools on this host",
    "--ui-mcp-proxy": "every client of llamasc may make this host fetch URLs (/cors-proxy)",
    "--hf-token": "the token is on every child's command line",
}
# Class C, but an operator may lift them with `allow` (e.g. a dedicated embedding sidecar).
_ROLE = frozenset({"--embedding", "--rerank"})
_ROLE_REASON = "changes the server's role (embeddings/rerank only, no completions)"
# Class C, but only some values hurt: -lv below 3 hides the readiness line (values.py).
_VALUE_CHECKED_C = frozenset({"--verbosity"})
_PRESET_REASON = "a built-in preset: it downloads a model and changes the port"

_B_GROUPS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"--rpc"}), "sends weights and tensors to remote RPC servers over the network"),
    (
        frozenset(
            {"--tools", "--tools-runtime", "--mcp-servers-config", "--mcp-servers-json", "--agent"}
        ),
        "lets the model run tools or spawn processes on the host",
    ),
    (
        frozenset({"--mmproj-url", "--mmproj-auto", "--spec-draft-hf"}),
        "downloads files from the network",
    ),
    (frozenset({"--video-ffmpeg-dir"}), "runs programs found in a directory"),
)
_WRITES = frozenset({"--slot-save-path", "--log-prompts-dir"})
_OPERATOR_ONLY_D: dict[str, str] = {
    "--numa": "sets NUMA placement for memory shared with other sidecars",
    "--check-tensors": "makes model loading much slower",
    **{
        name: "pins threads to CPUs shared with other sidecars"
        for name in (
            "--cpu-mask",
            "--cpu-range",
            "--cpu-strict",
            "--cpu-mask-batch",
            "--cpu-range-batch",
            "--cpu-strict-batch",
            "--spec-draft-cpu-mask",
            "--spec-draft-cpu-range",
            "--spec-draft-cpu-strict",
            "--spec-draft-cpu-mask-batch",
            "--spec-draft-cpu-range-batch",
            "--spec-draft-cpu-strict-batch",
        )
    },
}


class FlagPolicy(BaseModel):
    """What a caller may pass. ``FlagPolicy.untrusted()`` for HTTP clients (the default),
    ``FlagPolicy.operator()`` for trusted configuration.

    ``allow`` lifts the refusal of class A/B flags and of ``--embedding``/``--rerank`` (never
    pool-owned, print-and-exit or removed ones; values are still checked). ``deny`` refuses
    extra flags. ``path_roots`` allows a file flag only for paths that resolve (symlinks
    followed) inside one of its directories, e.g. ``{"--lora": ["/srv/loras"]}``. Names may be
    any spelling; they are matched by canonical name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["untrusted", "operator"] = "untrusted"
    allow: frozenset[str] = Field(default_factory=frozenset)
    deny: frozenset[str] = Field(default_factory=frozenset)
    path_roots: dict[str, tuple[Path, ...]] = Field(default_factory=dict)
    #: untrusted callers' ``-c`` at most (then ``-c 0``, the model's whole trained context,
    #: is refused too) and ``-np`` at most; None: only the ranges of llamasc.flags.values
    max_ctx_size: int | None = Field(default=None, ge=1)
    max_parallel: int | None = Field(default=None, ge=1)

    @field_validator("allow", "deny")
    @classmethod
    def _flag_names(cls, names: frozenset[str]) -> frozenset[str]:
        bad = sorted(n for n in names if not n.startswith("-"))
        if bad:
            raise ValueError(f"flag names must start with '-': {', '.join(bad)}")
        return names

    @field_validator("path_roots")
    @classmethod
    def _absolute_roots(cls, roots: dict[str, tuple[Path, ...]]) -> dict[str, tuple[Path, ...]]:
        for flag, dirs in roots.items():
            if not flag.startswith("-"):
                raise ValueError(f"path_roots key must be a flag name, got {flag!r}")
            for d in dirs:
                if not d.is_absolute():
                    raise ValueError(f"path_roots[{flag!r}] must hold absolute paths, got {d}")
        return roots

    @classmethod
    def untrusted(cls, **kwargs: object) -> FlagPolicy:
        """The policy for flags from HTTP clients."""
        return cls.model_validate({**kwargs, "mode": "untrusted"})

    @classmethod
    def operator(cls, **kwargs: object) -> FlagPolicy:
        """The policy for trusted configuration (BASE_ARGS, bench arms)."""
        return cls.model_validate({**kwargs, "mode": "operator"})

    @property
    def trusted(self) -> bool:
        return self.mode == "operator"


def refusal(
    spec: FlagSpec,
    policy: FlagPolicy,
    *,
    allowed: frozenset[str],
    denied: frozenset[str],
    rooted: frozenset[str],
) -> str | None:
    """Why ``policy`` refuses ``spec`` as a flag (values aside), or None.

    ``allowed``/``denied``/``rooted`` are the policy's allow, deny and path_roots names
    already mapped to canonical names.
    """
    name = spec.canonical
    if not spec.server:
        return "not a llama-server option (it belongs to other llama.cpp programs)"
    if spec.removed:
        return "removed from llama-server" + _removed_hint(spec)
    if not spec.in_binary:
        return "unknown to this llama-server (llamasc knows it, but the binary does not list it)"
    if "X" in spec.classes:
        return "prints something and exits, so the server would never start"
    if name in denied:
        return "refused by this pool's flag policy"
    if policy.trusted:
        for group, reason in _OPERATOR_GROUPS:
            if name in group:
                return reason
        return _PRESET_REASON if spec.notes.startswith("preset:") else None
    for group, reason in _POOL_GROUPS:
        if name in group:
            return reason
    if spec.notes.startswith("preset:"):
        return _PRESET_REASON
    if not spec.known:
        return (
            None
            if policy.trusted or name in allowed
            else "not in llamasc's table (found only in this binary's --help), so it cannot "
            "be checked"
        )
    if "C" in spec.classes:
        if name in _VALUE_CHECKED_C:
            return None
        if name in _ROLE:
            return None if name in allowed else _ROLE_REASON
        return "owned by the pool"
    if "B" in spec.classes and name not in allowed:
        for group, reason in _B_GROUPS:
            if name in group:
                return reason
        return "reaches the network or spawns processes"
    if "A" in spec.classes and not (policy.trusted or name in allowed or name in rooted):
        verb = "writes" if name in _WRITES else "reads"
        return f"{verb} files on the server host (an operator can allow it with path_roots)"
    if not policy.trusted and name in _OPERATOR_ONLY_D and name not in allowed:
        return f"operator only: it {_OPERATOR_ONLY_D[name]}"
    return None


def operator_warning(spec: FlagSpec, negative: bool) -> str | None:
    """What an accepted operator flag turns off or exposes, or None."""
    name = spec.spelling(negative) if negative and spec.negatives else spec.canonical
    return _OPERATOR_WARNINGS.get(name)


def _removed_hint(spec: FlagSpec) -> str:
    note = spec.notes.removeprefix("REMOVED:").strip()
    m = re.search(r"\(?(use [^;()]*)", note)
    return f"; {m.group(1).strip()}" if m else ""


def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path.is_relative_to(root.resolve()) for root in roots)


def check_paths(
    spec: FlagSpec, values: tuple[str, ...], roots: tuple[Path, ...] | None
) -> tuple[str | None, tuple[str, ...]]:
    """Check the file paths in ``values`` against ``roots``.

    Returns (reason refused or None, values with each path resolved). ``roots`` None means
    the caller is trusted with any path (still non-empty and existing is not required).
    """
    out: list[str] = []
    for value in values:
        if not value:
            return "needs a non-empty path", values
        if roots is None:
            out.append(value)
            continue
        items = value.split(",") if spec.value_kind == "path-list" else [value]
        resolved: list[str] = []
        for item in items:
            path_text, scale = item, ""
            if spec.canonical.endswith("-scaled") and ":" in item:
                path_text, _, scale = item.rpartition(":")
            p = Path(path_text)
            if not p.is_absolute():
                return f"'{path_text}' must be an absolute path", values
            real = p.resolve()
            if not _inside(real, roots):
                where = ", ".join(str(r) for r in roots)
                return f"'{path_text}' resolves outside the allowed directories ({where})", values
            if not real.exists():
                return f"'{path_text}' does not exist", values
            resolved.append(f"{real}:{scale}" if scale else str(real))
        out.append(",".join(resolved))
    return None, tuple(out)


__all__ = ["OPERATOR_OWNED", "FlagPolicy", "check_paths", "operator_warning", "refusal"]
