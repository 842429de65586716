"""The daemon's own cost per request, without llama.cpp's compute in the way. Prints JSON.

Interleaved 1-token chat completions to our fake llama-server directly and through a
``llamasc serve`` in front of it (same fake binary as its child), one client, keep-alive.
Reports both medians, the paired median difference (less noisy than a difference of
medians) and the daemon process's CPU time per request. The machine is noisy: run it twice.

Usage: python benchmarks/bench_overhead_fake.py   (BENCH_FAKE_N=500 requests per target)
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h
import bench_serve as b

N = int(os.environ.get("BENCH_FAKE_N", "500"))
WARM = 20
FAKE = h.ROOT / "tests" / "fakes" / "fake_llama_server.py"
PATH = "/v1/chat/completions"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        exe, model = h.shim_server(Path(tmp), FAKE, "-S")
        with (
            b.direct(exe, model) as d_url,
            b.daemon({"m": model}, 1, exe) as (l_url, pid),
            httpx.Client(timeout=60) as c,
        ):
            d_body, l_body = h.chat_body(None), h.chat_body("m")
            for _ in range(WARM):
                h.request_latency(c, d_url + PATH, d_body)
                h.request_latency(c, l_url + PATH, l_body)
            proc = psutil.Process(pid)
            cpu0 = proc.cpu_times()
            times: dict[str, list[float]] = {"direct": [], "llamasc": []}
            for _ in range(N):
                times["direct"].append(h.request_latency(c, d_url + PATH, d_body))
                times["llamasc"].append(h.request_latency(c, l_url + PATH, l_body))
            cpu1 = proc.cpu_times()
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    report = {
        "benchmark": "overhead_fake",
        "n": N,
        "median_ms": {k: round(statistics.median(v) * 1000, 3) for k, v in times.items()},
        "llamasc_added_ms_median_paired": round(h.paired_median_ms(times, "llamasc", "direct"), 3),
        "daemon_cpu_ms_per_request": round(cpu / N * 1000, 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
