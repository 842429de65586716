"""Reply bodies for the fake llama-server, in llama-server's exact JSON shapes.

Kept apart from the HTTP plumbing (fake_llama_server.py) so each file reads on its own.
Stdlib only: the fake must start in well under 100 ms.

The reply is deterministic: the words of the last user message (or the prompt), cycled
until ``max_tokens``/``n_predict``; one word is one token. Without a limit the words are
said once and the finish reason is ``stop``; with a limit it is ``length``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterator
from typing import Any

FINGERPRINT = "b11434-fake"
EMBED_DIM = 16


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _words(text: str) -> list[str]:
    return text.split() or ["ok"]


def message_text(content: Any) -> str:
    """Text of an OpenAI message ``content``: a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def chat_words(messages: Any) -> tuple[list[str], int]:
    """(words to echo, prompt token count) for a chat request's ``messages``."""
    if not isinstance(messages, list):
        return ["ok"], 1
    prompt_n = 0
    last_user = ""
    for m in messages:
        if not isinstance(m, dict):
            continue
        text = message_text(m.get("content"))
        prompt_n += len(text.split()) + 4  # the chat template's role markers cost tokens too
        if m.get("role") == "user":
            last_user = text
    return _words(last_user), max(prompt_n, 1)


def prompt_words(prompt: Any) -> tuple[list[str], int]:
    """(words to echo, prompt token count) for a completion ``prompt`` (str or list)."""
    if isinstance(prompt, list):
        prompt = " ".join(p for p in prompt if isinstance(p, str))
    text = prompt if isinstance(prompt, str) else ""
    return _words(text), max(len(text.split()), 1)


class Plan:
    """What one completion request will produce: the token pieces and the accounting."""

    def __init__(
        self,
        words: list[str],
        prompt_n: int,
        limit: int | None,
        forced_chunks: int | None,
        model: str,
    ) -> None:
        if forced_chunks is not None:
            n, finish = forced_chunks, "length"
        elif limit is not None and limit >= 0:
            n, finish = limit, "length"
        else:
            n, finish = len(words), "stop"
        self.n = n
        self.finish = finish
        self.words = words
        self.prompt_n = prompt_n
        self.model = model
        self.created = int(time.time())
        self.id_suffix = os.urandom(16).hex()
        self.t_start = time.perf_counter()
        self.t_prompt_done = self.t_start

    def pieces(self) -> Iterator[str]:
        """Token texts: the first word bare, the rest with a leading space."""
        w = self.words
        k = len(w)
        for i in range(self.n):
            yield w[i % k] if i == 0 else " " + w[i % k]

    def text(self) -> str:
        return "".join(self.pieces())

    def token_id(self, i: int) -> int:
        return 1000 + (i % len(self.words))

    def usage(self) -> dict[str, Any]:
        return {
            "completion_tokens": self.n,
            "prompt_tokens": self.prompt_n,
            "total_tokens": self.n + self.prompt_n,
            "prompt_tokens_details": {"cached_tokens": 0},
        }

    def timings(self) -> dict[str, Any]:
        prompt_ms = max((self.t_prompt_done - self.t_start) * 1000.0, 1e-3)
        predicted_ms = max((time.perf_counter() - self.t_prompt_done) * 1000.0, 1e-3)
        # llama-server counts the first token as free: (n - 1) / predicted_ms.
        gen = max(self.n - 1, 0)
        return {
            "cache_n": 0,
            "prompt_n": self.prompt_n,
            "prompt_ms": prompt_ms,
            "prompt_per_token_ms": prompt_ms / self.prompt_n,
            "prompt_per_second": 1000.0 * self.prompt_n / prompt_ms,
            "predicted_n": self.n,
            "predicted_ms": predicted_ms,
            "predicted_per_token_ms": predicted_ms / gen if gen else 0.0,
            "predicted_per_second": 1000.0 * gen / predicted_ms if gen else 0.0,
        }


# --- OpenAI chat ---------------------------------------------------------------------------


def chat_response(plan: Plan, fake: dict[str, Any]) -> dict[str, Any]:
    return {
        "choices": [
            {
                "finish_reason": plan.finish,
                "index": 0,
                "message": {"role": "assistant", "content": plan.text()},
            }
        ],
        "created": plan.created,
        "model": plan.model,
        "system_fingerprint": FINGERPRINT,
        "object": "chat.completion",
        "usage": plan.usage(),
        "id": "chatcmpl-" + plan.id_suffix,
        "timings": plan.timings(),
        "fake": fake,
    }


def _chunk_tail(plan: Plan, obj: str, id_prefix: str) -> str:
    return (
        f',"created":{plan.created},"id":"{id_prefix}{plan.id_suffix}",'
        f'"model":{_dumps(plan.model)},"system_fingerprint":"{FINGERPRINT}","object":"{obj}"}}'
    )


def chat_events(plan: Plan, include_usage: bool, fake: dict[str, Any]) -> Iterator[bytes]:
    """The SSE events of a streamed chat completion, ``[DONE]`` included."""
    tail = _chunk_tail(plan, "chat.completion.chunk", "chatcmpl-")
    head = 'data: {"choices":[{"finish_reason":null,"index":0,"delta":'
    yield (head + '{"role":"assistant","content":null}}]' + tail + "\n\n").encode()
    # Pre-encoding each distinct piece once keeps the hot loop at a few concatenations,
    # so the fake can push far more chunks per second than any relay under test.
    cache: dict[str, bytes] = {}
    for piece in plan.pieces():
        ev = cache.get(piece)
        if ev is None:
            ev = (head + '{"content":' + _dumps(piece) + "}}]" + tail + "\n\n").encode()
            cache[piece] = ev
        yield ev
    base = {
        "created": plan.created,
        "id": "chatcmpl-" + plan.id_suffix,
        "model": plan.model,
        "system_fingerprint": FINGERPRINT,
        "object": "chat.completion.chunk",
    }
    final: list[dict[str, Any]] = [
        {"choices": [{"finish_reason": plan.finish, "index": 0, "delta": {}}], **base}
    ]
    if include_usage:
        final.append({"choices": [], **base, "usage": plan.usage()})
    final[-1]["timings"] = plan.timings()
    final[-1]["fake"] = fake
    for obj in final:
        yield ("data: " + _dumps(obj) + "\n\n").encode()
    yield b"data: [DONE]\n\n"


# --- OpenAI text completions ---------------------------------------------------------------


def completion_response(plan: Plan, fake: dict[str, Any]) -> dict[str, Any]:
    return {
        "choices": [
            {"text": plan.text(), "index": 0, "logprobs": None, "finish_reason": plan.finish}
        ],
        "created": plan.created,
        "model": plan.model,
        "system_fingerprint": FINGERPRINT,
        "object": "text_completion",
        "usage": plan.usage(),
        "id": "chatcmpl-" + plan.id_suffix,
        "timings": plan.timings(),
        "fake": fake,
    }


def completion_events(plan: Plan, fake: dict[str, Any]) -> Iterator[bytes]:
    tail = _chunk_tail(plan, "text_completion", "chatcmpl-")
    cache: dict[str, bytes] = {}
    for piece in plan.pieces():
        ev = cache.get(piece)
        if ev is None:
            ev = (
                'data: {"choices":[{"text":'
                + _dumps(piece)
                + ',"index":0,"logprobs":null,"finish_reason":null}]'
                + tail
                + "\n\n"
            ).encode()
            cache[piece] = ev
        yield ev
    final = completion_response(plan, fake)
    final["choices"][0]["text"] = ""
    yield ("data: " + _dumps(final) + "\n\n").encode()
    yield b"data: [DONE]\n\n"


# --- native /completion --------------------------------------------------------------------


def native_final(plan: Plan, content: str, prompt: Any, fake: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": 0,
        "content": content,
        "tokens": [],
        "id_slot": 0,
        "stop": True,
        "model": plan.model,
        "tokens_predicted": plan.n,
        "tokens_evaluated": plan.prompt_n,
        "generation_settings": {"n_predict": plan.n, "speculative.types": "none"},
        "prompt": prompt if isinstance(prompt, str) else "",
        "has_new_line": False,
        "truncated": False,
        "stop_type": "limit" if plan.finish == "length" else "eos",
        "stopping_word": "",
        "tokens_cached": plan.prompt_n + plan.n,
        "timings": plan.timings(),
        "fake": fake,
    }


def native_events(plan: Plan, prompt: Any, fake: dict[str, Any]) -> Iterator[bytes]:
    """Streamed native completion: no ``[DONE]``, the connection's chunked body just ends."""
    for i, piece in enumerate(plan.pieces()):
        yield (
            'data: {"index":0,"content":'
            + _dumps(piece)
            + f',"tokens":[{plan.token_id(i)}],"stop":false,"id_slot":0,'
            + f'"tokens_predicted":{i + 1},"tokens_evaluated":{plan.prompt_n}}}\n\n'
        ).encode()
    yield ("data: " + _dumps(native_final(plan, "", prompt, fake)) + "\n\n").encode()


# --- model information ---------------------------------------------------------------------


def models_body(name: str, n_ctx: int, created: int) -> dict[str, Any]:
    """``GET /v1/models`` in single-model mode: the Ollama-style list plus OpenAI's."""
    meta = {
        "vocab_type": 2,
        "n_vocab": 49152,
        "n_ctx": n_ctx,
        "n_ctx_train": 8192,
        "n_embd": EMBED_DIM,
        "n_params": 134515008,
        "size": 85000000,
        "ftype": "Q4_1",
    }
    return {
        "models": [{"name": name, "model": name, "type": "model", "capabilities": []}],
        "object": "list",
        "data": [
            {
                "id": name,
                "aliases": [],
                "tags": [],
                "object": "model",
                "created": created,
                "owned_by": "llamacpp",
                "meta": meta,
            }
        ],
    }


def props_body(
    name: str, model_path: str, n_ctx: int, n_slots: int, slots: bool, metrics: bool
) -> dict[str, Any]:
    """``GET /props``, the keys llama-server has (values a small model could have)."""
    return {
        "default_generation_settings": {
            "params": {"n_predict": -1, "temperature": 0.8, "speculative.types": "none"},
            "n_ctx": n_ctx,
        },
        "total_slots": n_slots,
        "model_alias": name,
        "model_path": model_path,
        "modalities": {"vision": False, "video": False, "audio": False},
        "endpoint_slots": slots,
        "endpoint_props": False,
        "endpoint_metrics": metrics,
        "chat_template": "",
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "build_info": FINGERPRINT,
        "is_sleeping": False,
    }


# --- embeddings and rerank -----------------------------------------------------------------


def embed(text: str) -> list[float]:
    """A deterministic unit vector derived from the text's hash."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(b - 127.5) / 127.5 for b in digest[:EMBED_DIM]]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def embeddings_response(inputs: list[str], model: str) -> dict[str, Any]:
    n = sum(len(t.split()) for t in inputs)
    return {
        "model": model,
        "object": "list",
        "usage": {"prompt_tokens": n, "total_tokens": n},
        "data": [
            {"embedding": embed(t), "index": i, "object": "embedding"} for i, t in enumerate(inputs)
        ],
    }


def rerank_scores(query: str, docs: list[str]) -> list[tuple[int, float]]:
    """(index, score) best first; score = share of the query's words found in the document."""
    q = {w.lower() for w in query.split()}
    scored = []
    for i, d in enumerate(docs):
        words = {w.lower() for w in d.split()}
        scored.append((i, len(q & words) / len(q) if q else 0.0))
    scored.sort(key=lambda s: (-s[1], s[0]))
    return scored
