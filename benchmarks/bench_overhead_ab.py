"""Two llamasc daemons side by side in one run: is a change to the hot path worth it? Prints JSON.

Each daemon runs the ``src`` tree given (another checkout, e.g. ``git worktree add ../base
HEAD~1``), both in front of their own real llama-server with SmolLM2; direct requests to a third
llama-server are the reference. Rounds of 1-token chat completions in a new random order each
round; reported: each daemon's added latency (paired median against direct) and B minus A.

Usage: python benchmarks/bench_overhead_ab.py --a OTHER/src [--b src]   (BENCH_AB_N=300)
       python benchmarks/bench_overhead_ab.py --observability
         (one src: A without metrics, events and history, B with them; the target is
         b_minus_a_ms_median_paired <= 0.1)
       python benchmarks/bench_overhead_ab.py --coalescing
         (one src: A with LLAMASC_COALESCE_HEAD=0, the plain uvicorn protocol, B with the
         head+body coalescing of server/_httpproto.py)
       add --fake to put our fake llama-server behind all three instead of the real one: the
         daemons' own cost without llama.cpp's compute noise (also reports CPU per request)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h
import bench_serve as b

N = int(os.environ.get("BENCH_AB_N", "300"))
WARM_ROUNDS = 10
PATH = "/v1/chat/completions"
FAKE = h.ROOT / "tests" / "fakes" / "fake_llama_server.py"


def _cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", type=Path, help="src directory of daemon A")
    ap.add_argument("--b", type=Path, default=h.ROOT / "src", help="src directory of daemon B")
    ap.add_argument("--fake", action="store_true", help="the fake llama-server, not the real one")
    ap.add_argument(
        "--observability",
        action="store_true",
        help="A = B's src with --no-observability: what metrics, events and history cost",
    )
    ap.add_argument(
        "--coalescing",
        action="store_true",
        help="A = B's src with LLAMASC_COALESCE_HEAD=0: what the head+body coalescing saves",
    )
    args = ap.parse_args()
    env_a: dict[str, str] = {}
    if args.observability:
        args.a = args.a or args.b
        env_a["LLAMASC_OBSERVABILITY"] = "0"
    elif args.coalescing:
        args.a = args.a or args.b
        env_a["LLAMASC_COALESCE_HEAD"] = "0"
    elif args.a is None:
        ap.error("--a is required (or --observability, --coalescing)")
    for src in (args.a, args.b):
        if not (src / "llamasc" / "__init__.py").is_file():
            raise SystemExit(f"{src}: not a src directory with llamasc in it")
    env_a["PYTHONPATH"] = str(args.a.resolve())
    with contextlib.ExitStack() as stack:
        if args.fake:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            binary, smol = h.shim_server(tmp, FAKE, "-S")
        else:
            binary, smol = h.llama_server_bin(), h.smollm2()
        d_url = stack.enter_context(b.direct(binary, smol))
        a_url, a_pid = stack.enter_context(b.daemon({"smol": smol}, 1, binary, **env_a))
        b_url, b_pid = stack.enter_context(
            b.daemon({"smol": smol}, 1, binary, PYTHONPATH=str(args.b.resolve()))
        )
        c = stack.enter_context(httpx.Client(timeout=60))
        targets = {
            "direct": (d_url + PATH, h.chat_body(None)),
            "a": (a_url + PATH, h.chat_body("smol")),
            "b": (b_url + PATH, h.chat_body("smol")),
        }
        h.interleaved(c, targets, WARM_ROUNDS)  # load, first prompt, keep-alive
        cpu0 = {"a": _cpu(a_pid), "b": _cpu(b_pid)}
        times = h.interleaved(c, targets, N)
        cpu = {"a": _cpu(a_pid) - cpu0["a"], "b": _cpu(b_pid) - cpu0["b"]}

    report = {
        "benchmark": "overhead_ab",
        "n": N,
        "a": str(args.a),
        "b": str(args.b),
        "a_observability": env_a.get("LLAMASC_OBSERVABILITY", "default"),
        "a_coalesce_head": env_a.get("LLAMASC_COALESCE_HEAD", "default"),
        "added_ms_median_paired": {
            "a": round(h.paired_median_ms(times, "a", "direct"), 3),
            "b": round(h.paired_median_ms(times, "b", "direct"), 3),
        },
        "b_minus_a_ms_median_paired": round(h.paired_median_ms(times, "b", "a"), 3),
        "daemon_cpu_ms_per_request": {k: round(v / N * 1000, 3) for k, v in cpu.items()},
        "upstream": "fake" if args.fake else "llama-server",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
