"""The prompt cache across a swap: an agent's next turn after its model was swapped out and back.

One agent holds a ~2,000-token conversation with SmolLM2 through the llamasc daemon
(``MAX_SIDECARS=1``); a request to Gemma swaps SmolLM2 out; then the agent sends its next
turn. Two daemons in the same run, arms alternated per round: the slot cache on (the default:
SmolLM2's slot saved on the swap, restored on its next start) and off (``--no-slot-cache``).
Measured per arm: time to the first token of the next turn (the target: cache on at most 0.2x
of off), its ``prompt_n`` (tokens prefilled), and the swap time, i.e. the Gemma request that
evicts SmolLM2 (with the cache it includes the save). Prints one JSON object.

    python benchmarks/bench_prompt_cache.py [--rounds N] [--tokens N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h

COLORS = ["red", "green", "blue", "small", "large", "heavy", "light", "wooden", "old", "new"]
BASE = ["-c", "4096", "-np", "1", "-t", "2"]


def conversation(items: int) -> list[dict[str, str]]:
    """A system prompt of ``items`` inventory lines (~11 SmolLM2 tokens each) and a question."""
    lines = [f"Item {i} of the inventory is a {COLORS[i % 10]} box." for i in range(items)]
    return [
        {"role": "system", "content": "You keep this inventory.\n" + "\n".join(lines)},
        {"role": "user", "content": "What colour is item 7?"},
    ]


def stream_turn(
    client: httpx.Client, url: str, model: str, messages: list[dict[str, str]]
) -> dict[str, Any]:
    """One streaming chat turn: time to its first token, the answer and llama-server's timings."""
    body = {"model": model, "messages": messages, "max_tokens": 16, "temperature": 0,
            "stream": True}  # fmt: skip
    t0 = time.perf_counter()
    first: float | None = None
    text: list[str] = []
    timings: dict[str, Any] = {}
    with client.stream("POST", url, json=body) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"{model}: HTTP {resp.status_code}: {resp.read()[:200]!r}")
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    first = first or time.perf_counter()
                    text.append(piece)
            timings = chunk.get("timings") or timings
    end = time.perf_counter()
    return {"ttft_s": (first or end) - t0, "total_s": end - t0, "text": "".join(text),
            "prompt_n": timings.get("prompt_n")}  # fmt: skip


def run_arm(cache: bool, items: int, binary: Path, models: dict[str, Path]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        model_map = Path(tmp) / "models.json"
        model_map.write_text(json.dumps({k: str(v) for k, v in models.items()}))
        port = h.free_port()
        env = h.daemon_env(bind_port=port, model_map=model_map, max_sidecars=1, base_args=BASE,
                           binary=binary, home=Path(tmp) / "home")  # fmt: skip
        env["LLAMASC_SLOT_CACHE"] = "1" if cache else "0"
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        with h.process(h.daemon_argv(), env=env):
            h.wait_http_ok(f"http://127.0.0.1:{port}/health", timeout=60)
            with httpx.Client(timeout=600) as client:
                messages = conversation(items)
                turn1 = stream_turn(client, url, "smol", messages)
                messages += [{"role": "assistant", "content": turn1["text"]},
                             {"role": "user", "content": "And what colour is item 8?"}]  # fmt: skip
                t0 = time.perf_counter()
                h.request_latency(client, url, h.chat_body("gemma", 4))  # evicts smol
                swap = time.perf_counter() - t0
                turn2 = stream_turn(client, url, "smol", messages)
                slot_files = sum(p.stat().st_size for p in (Path(tmp) / "home").rglob("*.bin"))
    return {
        "first_turn_prompt_n": turn1["prompt_n"],
        "first_turn_ttft_s": round(turn1["ttft_s"], 3),
        "swap_s": round(swap, 3),
        "next_turn_ttft_s": round(turn2["ttft_s"], 3),
        "next_turn_prompt_n": turn2["prompt_n"],
        "slot_files_mib": round(slot_files / 2**20, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--items", type=int, default=180, help="inventory lines (~11 tokens each)")
    args = ap.parse_args()
    binary = h.llama_server_bin()
    models = {"smol": h.smollm2(), "gemma": h.gemma()}
    runs: dict[str, list[dict[str, Any]]] = {"cache": [], "no_cache": []}
    for r in range(args.rounds):
        order = [True, False] if r % 2 == 0 else [False, True]
        for cache in order:
            arm = "cache" if cache else "no_cache"
            runs[arm].append(run_arm(cache, args.items, binary, models))

    def med(arm: str, field: str) -> float:
        return statistics.median(float(x[field]) for x in runs[arm])

    ttft_ratio = med("cache", "next_turn_ttft_s") / med("no_cache", "next_turn_ttft_s")
    print(json.dumps({
        "benchmark": "prompt_cache",
        "conversation_tokens": runs["cache"][0]["first_turn_prompt_n"],
        "rounds": args.rounds,
        "next_turn_ttft_s": {"cache": med("cache", "next_turn_ttft_s"),
                             "no_cache": med("no_cache", "next_turn_ttft_s")},
        "next_turn_ttft_ratio": round(ttft_ratio, 3),
        "target_ratio_max": 0.2,
        "meets_target": ttft_ratio <= 0.2,
        "swap_s": {"cache": med("cache", "swap_s"), "no_cache": med("no_cache", "swap_s")},
        "runs": runs,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
