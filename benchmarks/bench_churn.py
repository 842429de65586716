"""Churn: agents on two models in one slot, llamasc against llama.cpp's router, same run.

Part 1: 4 agents on 2 models (SmolLM2 and Gemma, 2 agents each), 6 short requests each, back
to back, ``MAX_SIDECARS=1`` against the router (``llama-server --models-dir DIR --models-max
1``) on the same models. Per system: makespan, the longest single request (the target for
llamasc: at most ``max_wait`` plus two swaps, the swap time measured first in the same run) and
the number of model loads (child processes counted as they appear; the target: llamasc's
makespan at most the router's).

Part 2: agents that never pause: 2 on SmolLM2 for ``--duration`` seconds, then 2 on Gemma join;
the time to Gemma's first answer (the target for llamasc: within ``max_wait`` plus a swap).
Prints one JSON object.

    python benchmarks/bench_churn.py [--duration 60] [--max-wait 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h
from bench_serve import daemon, router

PATH = "/v1/chat/completions"


class LoadCounter:
    """Counts the llama-server processes started under ``pid`` (polled every 20 ms; a load
    lives far longer than that)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.seen: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                for child in self.root.children(recursive=True):
                    if child.pid not in self.seen:
                        with contextlib.suppress(psutil.Error):
                            cmd = child.cmdline()
                            if cmd and "llama-server" in Path(cmd[0]).name:
                                self.seen[child.pid] = _model_of(cmd)
            self._stop.wait(0.02)

    def __enter__(self) -> LoadCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def loads(self) -> int:
        return len(self.seen)


def _model_of(cmd: list[str]) -> str:
    for flag in ("-m", "--model"):
        if flag in cmd:
            return Path(cmd[cmd.index(flag) + 1]).name
    return "?"


DISCONNECTS: dict[str, int] = {}


def ask(client: httpx.Client, url: str, model: str) -> float:
    """One short request's latency; a connection the server closed without answering is
    counted (per URL) and the request sent again, the retry counted in its latency."""
    body = h.chat_body(model, max_tokens=8)
    t0 = time.perf_counter()
    for attempt in range(3):
        try:
            h.request_latency(client, url + PATH, body)
            return time.perf_counter() - t0
        except httpx.RemoteProtocolError:
            DISCONNECTS[url] = DISCONNECTS.get(url, 0) + 1
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def agents_6x(url: str) -> dict[str, Any]:
    """4 agents, 2 per model, 6 requests each, back to back; all start together."""
    latencies: dict[str, list[float]] = {}
    errors: list[str] = []
    start = threading.Barrier(4)

    def agent(name: str, model: str) -> None:
        out = latencies.setdefault(name, [])
        with httpx.Client(timeout=300) as client:
            start.wait()
            for _ in range(6):
                try:
                    out.append(ask(client, url, model))
                except Exception as exc:
                    errors.append(f"{name}: {exc}")

    names = [("smol-a", "smol"), ("gemma-a", "gemma"), ("smol-b", "smol"), ("gemma-b", "gemma")]
    threads = [threading.Thread(target=agent, args=n) for n in names]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    makespan = time.perf_counter() - t0
    flat = [x for v in latencies.values() for x in v]
    return {
        "makespan_s": round(makespan, 3),
        "longest_wait_s": round(max(flat), 3),
        "requests_ok": len(flat),
        "errors": errors[:5],
    }


def never_pausing(url: str, duration: float) -> dict[str, Any]:
    """2 SmolLM2 agents that never pause for ``duration`` s; 2 Gemma agents join once SmolLM2
    is busy; the time each Gemma agent waited for its first answer."""
    stop = threading.Event()
    served: dict[str, int] = {"smol": 0, "gemma": 0}
    first_gemma: list[float] = []
    errors: list[str] = []
    smol_busy = threading.Event()

    def agent(model: str) -> None:
        with httpx.Client(timeout=duration + 300) as client:
            first = True
            t0 = time.perf_counter()
            while not stop.is_set():
                try:
                    ask(client, url, model)
                except Exception as exc:
                    errors.append(f"{model}: {exc}")
                    continue
                served[model] += 1
                if model == "smol":
                    smol_busy.set()
                elif first:
                    first_gemma.append(time.perf_counter() - t0)
                    first = False

    smol = [threading.Thread(target=agent, args=("smol",)) for _ in range(2)]
    for t in smol:
        t.start()
    smol_busy.wait(120)
    gemma = [threading.Thread(target=agent, args=("gemma",)) for _ in range(2)]
    for t in gemma:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in smol + gemma:
        t.join()
    return {
        "duration_s": duration,
        "gemma_first_answer_s": [round(x, 3) for x in sorted(first_gemma)] or None,
        "requests_served": served,
        "errors": errors[:5],
    }


def swap_time(url: str) -> float:
    """One swap each way (warm smol -> gemma -> smol); the slower of the two."""
    with httpx.Client(timeout=300) as client:
        ask(client, url, "smol")
        swaps = [ask(client, url, "gemma"), ask(client, url, "smol")]
    return max(swaps)


@contextlib.contextmanager
def system(name: str, binary: Path, models: dict[str, Path], max_wait: float) -> Iterator[Any]:
    if name == "llamasc":
        with daemon(models, 1, binary, LLAMASC_MAX_WAIT=str(max_wait)) as (url, pid):
            yield url, pid
    else:
        with router(binary, models) as url:
            pid = next(
                p.pid
                for p in psutil.Process(os.getpid()).children()
                if "llama-server" in Path(p.cmdline()[0]).name
            )
            yield url, pid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=20.0, help="part 2 length, seconds")
    ap.add_argument("--max-wait", type=float, default=10.0)
    args = ap.parse_args()
    binary = h.llama_server_bin()
    models = {"smol": h.smollm2(), "gemma": h.gemma()}
    out: dict[str, Any] = {"benchmark": "churn", "max_wait_s": args.max_wait}
    for name in ("llamasc", "router"):
        with system(name, binary, models, args.max_wait) as (url, pid):
            swap = swap_time(url)
            with LoadCounter(pid) as loads:
                part1 = agents_6x(url)
            part1["model_loads"] = loads.loads()
            part1["swap_s"] = round(swap, 3)
            part1["disconnects_retried"] = DISCONNECTS.get(url, 0)
        with system(name, binary, models, args.max_wait) as (url, pid):
            ask(httpx.Client(timeout=300), url, "smol")  # loaded: the Gemma agents must swap
            with LoadCounter(pid) as loads:
                part2 = never_pausing(url, args.duration)
            part2["model_loads"] = loads.loads()
            part2["disconnects_retried"] = DISCONNECTS.get(url, 0)
        out[name] = {"six_requests_each": part1, "never_pausing": part2}
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    me, them = out["llamasc"], out["router"]
    bound1 = args.max_wait + 2 * me["six_requests_each"]["swap_s"]
    bound2 = args.max_wait + me["six_requests_each"]["swap_s"]
    firsts = me["never_pausing"]["gemma_first_answer_s"] or [float("inf")]
    out["targets"] = {
        "makespan_ratio_llamasc_over_router": round(
            me["six_requests_each"]["makespan_s"] / them["six_requests_each"]["makespan_s"], 3
        ),
        "makespan_at_most_router": me["six_requests_each"]["makespan_s"]
        <= them["six_requests_each"]["makespan_s"],
        "longest_wait_bound_s": round(bound1, 3),
        "longest_wait_within_bound": me["six_requests_each"]["longest_wait_s"] <= bound1,
        "other_model_first_answer_bound_s": round(bound2, 3),
        "other_model_first_answer_within_bound": max(firsts) <= bound2,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
