"""A well-behaved client's latency with and without a bounded abuse mix. Prints JSON.

One ``llamasc serve`` over our fake llama-server, all on 127.0.0.1. A good client sends warm
1-token chat completions on one keep-alive connection, first alone, then while a separate
abuser process runs, for the same number of requests each phase:

* slowloris: connections sending their request head one byte every 0.5 s;
* header floods: 1 MiB header lines, and requests with 500 headers;
* 256 unknown 20-character flags in ``X-Agent-Flags``, a new set every request;
* 1,000 idle connections, held open (reopened when the daemon closes them);
* oversized ids: a 1 MB model id in the body, a 50 KB path.

The abuser runs in its own process so that its work does not share the good client's
interpreter; the daemon is a third process. Target: p99 with abuse at most 3x p99 without.
Also reports what the abusers got back (status counts) and what one hostile flag header costs
the validator (the event loop's share of such a request).

Usage: python benchmarks/bench_abuse.py   (BENCH_ABUSE_N=400 good requests per phase)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h
import bench_serve as b

N = int(os.environ.get("BENCH_ABUSE_N", "400"))
WARM = 30
FAKE = h.ROOT / "tests" / "fakes" / "fake_llama_server.py"
PATH = "/v1/chat/completions"
IDLE = 1000
SLOWLORIS = 50
# kind -> (concurrent loops, seconds between two attacks of one loop): a bounded mix, so the
# run measures what each attack costs the daemon, not how fast the abuser can burn this
# machine's cores (all three processes share them)
MIX: dict[str, tuple[int, float]] = {
    "idle": (IDLE, 0.0),  # held until the daemon closes them, then reopened
    "slowloris": (SLOWLORIS, 0.0),  # one byte every 0.5 s until cut
    "flood": (2, 0.1),  # 1 MiB header lines: 20 a second
    "many": (2, 0.1),  # 500 headers: 20 a second
    "flags": (4, 0.1),  # 256 new unknown flags: 40 requests a second
    "ids": (2, 0.1),  # 1 MB model id and 50 KB path: 20 pairs a second
}
# BENCH_ABUSE_KINDS=idle,flags ... runs only those (to see what costs what); default: all
KINDS = set(os.environ.get("BENCH_ABUSE_KINDS", "idle,slowloris,flood,many,flags,ids").split(","))


def quantiles(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "p50_ms": round(statistics.median(xs) * 1e3, 3),
        "p99_ms": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1e3, 3),
        "max_ms": round(xs[-1] * 1e3, 3),
    }


def good_phase(c: httpx.Client, url: str) -> list[float]:
    body = h.chat_body("m")
    return [h.request_latency(c, url + PATH, body) for _ in range(N)]


# -------------------------------------------------------------------------- the abuser


def _raise_nofile() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Abuser:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.got: Counter[str] = Counter()
        self.stop = False

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)

    async def _answer(self, r: asyncio.StreamReader, kind: str) -> None:
        try:
            line = await asyncio.wait_for(r.readline(), 60)
        except (TimeoutError, OSError):
            line = b""
        status = line.split(b" ")[1].decode() if line.startswith(b"HTTP/") else "closed"
        self.got[f"{kind}:{status}"] += 1

    async def _forever(self, kind: str, one: Any, every: float) -> None:
        """``one()`` again and again, at most once every ``every`` seconds (0: no pause)."""
        loop = asyncio.get_running_loop()
        while not self.stop:
            t0 = loop.time()
            try:
                await one()
            except OSError:
                self.got[f"{kind}:reset"] += 1
            await asyncio.sleep(max(0.0, every - (loop.time() - t0)))

    async def slowloris(self) -> None:
        r, w = await self._open()
        self.got["slowloris:opened"] += 1
        try:
            w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            while not self.stop and not r.at_eof():
                w.write(b"X")
                await w.drain()
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(r.read(1), 0.5):
                        self.got["slowloris:cut"] += 1
                        return
        finally:
            w.close()

    async def header_flood(self) -> None:
        r, w = await self._open()
        try:
            w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Flood: ")
            for _ in range(16):
                w.write(b"a" * 65536)
                await w.drain()
        except OSError:
            pass
        await self._answer(r, "header_flood")
        w.close()
        await asyncio.sleep(0.02)

    async def many_headers(self) -> None:
        r, w = await self._open()
        heads = b"".join(b"X-H%d: v\r\n" % i for i in range(500))
        with contextlib.suppress(OSError):
            w.write(b"GET /health HTTP/1.1\r\nHost: x\r\n" + heads + b"\r\n")
            await w.drain()
        await self._answer(r, "many_headers")
        w.close()
        await asyncio.sleep(0.02)

    async def unknown_flags(self, c: httpx.AsyncClient) -> None:
        rng = random.Random()
        flags = " ".join(
            "--" + "".join(rng.choices(string.ascii_lowercase, k=18)) for _ in range(256)
        )
        r = await c.post(PATH, json=h.chat_body("m"), headers={"x-agent-flags": flags})
        self.got[f"unknown_flags:{r.status_code}"] += 1

    async def oversized(self, c: httpx.AsyncClient) -> None:
        r = await c.post(PATH, json=h.chat_body("m" * 1_000_000))
        self.got[f"oversized_id:{r.status_code}"] += 1
        r = await c.get("/" + "p" * 50_000)
        self.got[f"oversized_path:{r.status_code}"] += 1

    async def idle(self) -> None:
        r, w = await self._open()
        self.got["idle:opened"] += 1
        try:
            await r.read(1)  # returns when the daemon closes it (header timeout): reopen
        finally:
            w.close()

    def mix(self, c: httpx.AsyncClient) -> list[tuple[str, int, Any, float]]:
        """(kind, concurrent loops, one attack, seconds between two of a loop): see MIX."""
        one = {
            "idle": self.idle,
            "slowloris": self.slowloris,
            "flood": self.header_flood,
            "many": self.many_headers,
            "flags": lambda: self.unknown_flags(c),
            "ids": lambda: self.oversized(c),
        }
        return [(kind, n, one[kind], every) for kind, (n, every) in MIX.items()]

    async def run(self) -> None:
        """Abuse until standard input closes."""
        base = f"http://{self.host}:{self.port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            tasks = [
                asyncio.create_task(self._forever(kind, one, every))
                for kind, count, one, every in self.mix(c)
                if kind in KINDS
                for _ in range(count)
            ]
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
            self.stop = True
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def abuser_main(url: str) -> None:
    _raise_nofile()
    u = httpx.URL(url)
    abuser = Abuser(u.host, u.port or 80)
    asyncio.run(abuser.run())
    print(json.dumps(dict(sorted(abuser.got.items()))), flush=True)


# -------------------------------------------------------------------------- the run


def flag_cost_ms() -> dict[str, float]:
    """What one new hostile X-Agent-Flags header costs the validator, in ms."""
    from llamasc.flags import FlagPolicy, validate_flags

    policy = FlagPolicy.untrusted()
    rng = random.Random(0)
    times = []
    for _ in range(200):
        flags = " ".join(
            "--" + "".join(rng.choices(string.ascii_lowercase, k=18)) for _ in range(256)
        )
        t0 = time.perf_counter()
        validate_flags(flags, policy)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"p50_ms": round(statistics.median(times) * 1e3, 3),
            "p90_ms": round(times[int(len(times) * 0.9)] * 1e3, 3)}  # fmt: skip


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        exe, model = h.shim_server(Path(tmp), FAKE, "-S")
        with b.daemon({"m": model}, 1, exe) as (url, _pid), httpx.Client(timeout=60) as c:
            for _ in range(WARM):
                h.request_latency(c, url + PATH, h.chat_body("m"))
            calm = good_phase(c, url)
            abuser = subprocess.Popen(
                [sys.executable, __file__, "--abuser", url],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert abuser.stdout is not None
                assert abuser.stdout.readline().strip() == "ready"
                time.sleep(3.0)  # let the idle connections and floods build up
                stormy = good_phase(c, url)
                health = c.get(url + "/health").status_code
                out, _ = abuser.communicate("", timeout=120)  # closing stdin stops it
            finally:
                if abuser.poll() is None:
                    abuser.kill()
            abuse = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    calm_q, stormy_q = quantiles(calm), quantiles(stormy)
    print(
        json.dumps(
            {
                "requests_per_phase": N,
                "good_client_without_abuse": calm_q,
                "good_client_with_abuse": stormy_q,
                "p99_ratio": round(stormy_q["p99_ms"] / calm_q["p99_ms"], 2),
                "p50_ratio": round(stormy_q["p50_ms"] / calm_q["p50_ms"], 2),
                "target_p99_ratio_at_most": 3.0,
                "health_during_abuse": health,
                "abuse_mix": {k: {"loops": n, "every_s": e} for k, (n, e) in MIX.items()},
                "abuse_outcomes": abuse,
                "hostile_flag_header_cost": flag_cost_ms(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--abuser":
        abuser_main(sys.argv[2])
    else:
        main()
