"""The Pool run loop with an in-process fake launcher: fast, exercises every effect."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pool_fakes import FakeLauncher, until

from llamasc.config import ModelCatalog, ModelEntry
from llamasc.errors import (
    CapacityError,
    NotFoundError,
    RequestError,
    ShuttingDownError,
    SpawnError,
    UnknownModelError,
)
from llamasc.flags import merge_flags, sidecar_key
from llamasc.pool.config import PoolConfig
from llamasc.pool.pool import Pool

pytestmark = pytest.mark.anyio

CATALOG = ModelCatalog.of(
    [
        ModelEntry("m1", Path("m1.gguf"), env={"X_MODEL": "1"}),
        ModelEntry("m2", Path("m2.gguf")),
    ]
)
BASE = ("-c", "512")


def seed(i: int) -> list[str]:
    return ["--seed", str(i)]


def make_pool(launcher: FakeLauncher, **config: object) -> Pool:
    config.setdefault("port_range", (20000, 20999))
    config.setdefault("health_interval", 0)
    return Pool(PoolConfig(**config), CATALOG, Path("llama-server"), BASE, launcher=launcher)  # type: ignore[arg-type]


@pytest.fixture
def launcher() -> FakeLauncher:
    return FakeLauncher()


@pytest.fixture
async def pool(launcher: FakeLauncher) -> AsyncIterator[Pool]:
    async with make_pool(launcher, max_sidecars=2) as p:
        yield p
    assert not launcher.live, "close() left children running"


async def test_a_ready_sidecar_is_reused_for_the_same_model_and_flags(
    pool: Pool, launcher: FakeLauncher
) -> None:
    async with pool.lease("m1", seed(1)) as first:
        assert first.base_url == f"http://127.0.0.1:{first.port}"
        async with pool.lease("m1", seed(1)) as second:
            assert second.key == first.key
            [info] = pool.sidecars()
            assert info.in_flight == 2
        second.record({"predicted_per_second": 12.5})
    assert len(launcher.specs) == 1
    [info] = pool.sidecars()
    assert info.in_flight == 0
    assert info.requests_served == 2
    assert info.last_timings == {"predicted_per_second": 12.5}
    assert info.state == "ready"
    assert info.model == "m1"
    assert info.hash == sidecar_key("m1", merge_flags(BASE, seed(1)))
    assert info.pid == launcher.children[0].pid
    assert info.last_used is not None
    assert abs(info.last_used - time.time()) < 5


async def test_the_child_gets_the_merged_flags_model_env_and_a_port_in_range(
    pool: Pool, launcher: FakeLauncher
) -> None:
    async with pool.lease("m1", seed(7)):
        pass
    [spec] = launcher.specs
    assert spec.args == merge_flags(BASE, seed(7))
    assert spec.model_path == Path("m1.gguf")
    assert spec.env == {"X_MODEL": "1"}
    assert 20000 <= spec.port <= 20999
    assert spec.host == "127.0.0.1"


async def test_different_flags_get_different_sidecars(pool: Pool, launcher: FakeLauncher) -> None:
    async with pool.lease("m1", seed(1)) as a, pool.lease("m1", seed(2)) as b:
        assert a.key != b.key
        assert a.port != b.port
    assert len(launcher.specs) == 2


async def test_unknown_model_is_refused_before_anything_starts(
    pool: Pool, launcher: FakeLauncher
) -> None:
    with pytest.raises(UnknownModelError, match="nope"):
        async with pool.lease("nope", []):
            pass
    assert launcher.specs == []


async def test_200_distinct_flag_sets_hammered_never_run_more_than_2_children(
    launcher: FakeLauncher,
) -> None:
    outcomes: list[str] = []

    async def one(i: int) -> None:
        try:
            async with pool.lease("m1" if i % 2 else "m2", seed(i)) as lease:
                assert lease.base_url
                await asyncio.sleep(0)
            outcomes.append("ok")
        except CapacityError:
            outcomes.append("capacity")

    async with make_pool(launcher, max_sidecars=2, queue_timeout=30) as pool:
        await asyncio.gather(*(one(i) for i in range(200)))
        assert pool.sidecars()
        assert all(s.in_flight == 0 for s in pool.sidecars())
    assert len(outcomes) == 200
    assert set(outcomes) <= {"ok", "capacity"}
    assert launcher.max_live <= 2
    # every flag set is its own sidecar: each request that got one had its own child
    assert len({spec.args for spec in launcher.specs}) == len(launcher.specs)
    assert len(launcher.specs) >= outcomes.count("ok") > 0
    assert not launcher.live


async def test_hammering_with_a_short_queue_timeout_sheds_load_with_503(
    launcher: FakeLauncher,
) -> None:
    launcher.gate = asyncio.Event()
    outcomes: list[str] = []

    async def one(i: int) -> None:
        try:
            async with pool.lease("m1", seed(i)):
                pass
            outcomes.append("ok")
        except CapacityError:
            outcomes.append("capacity")

    async with make_pool(launcher, max_sidecars=2, queue_timeout=0.05) as pool:
        tasks = [asyncio.create_task(one(i)) for i in range(50)]
        await until(lambda: outcomes.count("capacity") == 48)
        launcher.gate.set()  # the two that got a slot finish loading
        await asyncio.gather(*tasks)
    assert outcomes.count("ok") == 2
    assert launcher.max_live <= 2


async def test_a_full_pool_of_busy_sidecars_makes_the_newcomer_wait_then_503(
    launcher: FakeLauncher,
) -> None:
    pool = make_pool(launcher, max_sidecars=1, queue_timeout=0.2)
    async with pool, pool.lease("m1", []):
        t0 = time.monotonic()
        with pytest.raises(CapacityError) as err:
            async with pool.lease("m2", []):
                pass
        waited = time.monotonic() - t0
        assert 0.15 <= waited < 3
        assert err.value.http_status == 503
        assert "Retry-After" in err.value.headers()
        # the busy sidecar was not touched
        assert [s.model for s in pool.sidecars()] == ["m1"]
        assert launcher.children[0].stop_calls == 0


async def test_an_idle_sidecar_is_swapped_out_for_a_new_model(launcher: FakeLauncher) -> None:
    async with make_pool(launcher, max_sidecars=1) as pool:
        async with pool.lease("m1", []):
            pass
        async with pool.lease("m2", []):
            assert [s.model for s in pool.sidecars()] == ["m2"]
        assert launcher.children[0].returncode is not None
        assert launcher.max_live == 1


async def test_a_sidecar_owns_its_connections_from_ready_to_gone(launcher: FakeLauncher) -> None:
    """Each ready child has its own keep-alive pool (``lease.upstream``): a restarted child of
    the same key gets a new one; a stopping one refuses new requests, and a gone one is closed
    (an idle keep-alive connection delays llama-server's exit by ~0.1 s on every swap)."""
    async with make_pool(launcher, max_sidecars=1) as pool:
        async with pool.lease("m1", []) as lease:
            first = lease.upstream
            assert first.base_url == lease.base_url
        async with pool.lease("m1", []) as lease:
            assert lease.upstream is first  # the same child: the same connections
        async with pool.lease("m2", []) as lease:  # m1 was swapped out
            assert lease.upstream is not first
        assert first.closed()
        async with pool.lease("m1", []) as lease:  # m1 again: a new child, new connections
            assert lease.upstream is not first
            assert not lease.upstream.closed()


async def test_a_busy_sidecar_is_swapped_as_soon_as_its_last_request_ends(
    launcher: FakeLauncher,
) -> None:
    async with make_pool(launcher, max_sidecars=1, queue_timeout=30) as pool:
        got_m2 = asyncio.Event()

        async def want_m2() -> None:
            async with pool.lease("m2", []):
                got_m2.set()

        async with pool.lease("m1", []):
            waiter = asyncio.create_task(want_m2())
            await until(lambda: pool._sched.waiting() == 1)
            assert not got_m2.is_set()
        await asyncio.wait_for(waiter, 5)
        assert launcher.max_live == 1


async def test_concurrent_first_requests_share_one_start(launcher: FakeLauncher) -> None:
    launcher.gate = asyncio.Event()
    async with make_pool(launcher, max_sidecars=2) as pool:

        async def use() -> str:
            async with pool.lease("m1", []) as lease:
                return lease.key

        tasks = [asyncio.create_task(use()) for _ in range(5)]
        await until(lambda: pool._sched.waiting() == 5)
        assert [s.state for s in pool.sidecars()] == ["starting"]
        launcher.gate.set()
        keys = await asyncio.gather(*tasks)
    assert len(set(keys)) == 1
    assert len(launcher.specs) == 1


async def test_a_failed_start_fails_every_waiter_and_the_next_request_retries(
    launcher: FakeLauncher,
) -> None:
    launcher.gate = asyncio.Event()
    launcher.fail = lambda spec: len(launcher.specs) == 1
    async with make_pool(launcher, max_sidecars=1) as pool:

        async def use() -> None:
            async with pool.lease("m1", []):
                pass

        tasks = [asyncio.create_task(use()) for _ in range(3)]
        await until(lambda: pool._sched.waiting() == 3)
        launcher.gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, SpawnError) for r in results), results
        assert len({id(r) for r in results}) == 3  # each caller raises its own error
        assert pool.sidecars() == []
        async with pool.lease("m1", []):
            pass
    assert len(launcher.specs) == 2


async def test_a_crashed_child_is_replaced_on_the_next_request(
    pool: Pool, launcher: FakeLauncher
) -> None:
    async with pool.lease("m1", []) as lease:
        first = launcher.for_port(lease.port)
    first.exit(-11)
    await until(lambda: pool.sidecars() == [])
    async with pool.lease("m1", []) as lease:
        [info] = pool.sidecars()
        assert info.pid != first.pid
        assert info.restarts == 1


async def test_unhealthy_child_is_replaced_after_consecutive_failed_checks(
    launcher: FakeLauncher,
) -> None:
    async with make_pool(launcher, max_sidecars=1, health_interval=0.02, health_failures=2) as pool:
        async with pool.lease("m1", []):
            pass
        sick = launcher.children[0]
        sick.healthy = False
        await until(lambda: sick.returncode is not None)
        assert sick.health_checks >= 2
        async with pool.lease("m1", []):
            assert pool.sidecars()[0].pid != sick.pid


async def test_cancelling_a_waiter_leaks_no_lease(launcher: FakeLauncher) -> None:
    async with make_pool(launcher, max_sidecars=1, queue_timeout=30) as pool:

        async def use(model: str) -> None:
            async with pool.lease(model, []):
                await asyncio.sleep(0)

        async with pool.lease("m1", []):
            waiter = asyncio.create_task(use("m2"))
            await until(lambda: pool._sched.waiting() == 1)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert pool._sched.waiting() == 0
        # m1 is idle again, so m2 can take its place at once
        await asyncio.wait_for(use("m2"), 5)
        assert pool._sched.in_flight() == 0


async def test_cancelled_just_after_being_granted_still_gives_the_slot_back(
    launcher: FakeLauncher,
) -> None:
    launcher.gate = asyncio.Event()
    async with make_pool(launcher, max_sidecars=1) as pool:

        async def use() -> None:
            async with pool.lease("m1", []):
                raise AssertionError("the body must not run")

        task = asyncio.create_task(use())
        await until(lambda: pool._sched.waiting() == 1)

        def cancel_when_ready() -> None:
            # runs right after the grant resolved the waiter, before it could resume
            if any(s.state == "ready" for s in pool.sidecars()):
                task.cancel()

        pool.on_change = cancel_when_ready
        launcher.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool._sched.in_flight() == 0
        [info] = pool.sidecars()
        assert info.in_flight == 0


async def test_the_lease_is_released_when_the_body_is_cancelled(pool: Pool) -> None:
    inside = asyncio.Event()

    async def body() -> None:
        async with pool.lease("m1", []):
            inside.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(body())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.sidecars()[0].in_flight == 0


async def test_find_logs_and_stopping_one_sidecar(pool: Pool, launcher: FakeLauncher) -> None:
    async with pool.lease("m1", []) as a, pool.lease("m2", []):
        pass
    info = pool.find(a.key[:8].upper())
    assert info.hash == a.key
    assert pool.logs(a.key[:10], 2) == launcher.for_port(a.port).tail(2)
    with pytest.raises(RequestError, match="at least 8 hex"):
        pool.find(a.key[:7])
    with pytest.raises(RequestError, match="at least 8 hex"):
        pool.find("zzzzzzzz")
    with pytest.raises(NotFoundError):
        pool.find("0" * 64)
    child = launcher.for_port(a.port)
    stopped = await pool.stop_sidecar(a.key[:12])
    assert stopped.hash == a.key
    assert stopped.state == "stopped"
    assert child.returncode is not None
    assert [s.model for s in pool.sidecars()] == ["m2"]


async def test_an_ambiguous_prefix_is_refused(launcher: FakeLauncher) -> None:
    # find two flag sets whose keys share their first 8 hex digits
    # (merging once and substituting the seed keeps this search well under a second)
    template = list(merge_flags(BASE, seed(0)))
    at = template.index("--seed") + 1
    seen: dict[str, int] = {}
    for i in range(2_000_000):
        template[at] = str(i)
        prefix = sidecar_key("m1", template)[:8]
        if prefix in seen:
            pair = (seen[prefix], i)
            break
        seen[prefix] = i
    async with make_pool(launcher, max_sidecars=2) as pool:
        async with pool.lease("m1", seed(pair[0])), pool.lease("m1", seed(pair[1])):
            pass
        with pytest.raises(RequestError, match="ambiguous"):
            pool.find(prefix)


async def test_stop_model_and_stop_all(pool: Pool, launcher: FakeLauncher) -> None:
    async with pool.lease("m1", seed(1)), pool.lease("m2", []):
        pass
    assert [s.model for s in await pool.stop_model("m1")] == ["m1"]
    assert [s.model for s in pool.sidecars()] == ["m2"]
    assert await pool.stop_model("m1") == []
    with pytest.raises(UnknownModelError):
        await pool.stop_model("nope")
    assert [s.model for s in await pool.stop_all()] == ["m2"]
    assert pool.sidecars() == []
    assert not launcher.live
    async with pool.lease("m1", []):  # the pool stays usable
        pass


async def test_stopping_a_sidecar_while_it_starts_aborts_the_start(
    launcher: FakeLauncher,
) -> None:
    launcher.gate = asyncio.Event()
    async with make_pool(launcher, max_sidecars=1) as pool:

        async def use() -> int:
            async with pool.lease("m1", []) as lease:
                return lease.port

        task = asyncio.create_task(use())
        await until(lambda: len(launcher.specs) == 1)
        info = await pool.stop_sidecar(pool.sidecars()[0].hash)
        assert info.state == "stopped"
        assert launcher.cancelled == 1
        # the waiter was not failed: it gets a fresh start
        launcher.gate.set()
        await asyncio.wait_for(task, 5)
        assert len(launcher.specs) == 2


async def test_close_stops_everything_rejects_waiters_and_later_leases(
    launcher: FakeLauncher,
) -> None:
    launcher.gate = asyncio.Event()
    pool = make_pool(launcher, max_sidecars=1)
    await pool.start()

    async def use() -> None:
        async with pool.lease("m1", []):
            pass

    task = asyncio.create_task(use())
    await until(lambda: len(launcher.specs) == 1)
    await pool.close()
    await pool.close()  # idempotent
    assert not launcher.live
    with pytest.raises(ShuttingDownError):
        await task
    with pytest.raises(ShuttingDownError):
        await use()


async def test_no_free_port_fails_the_request_with_a_clear_error(launcher: FakeLauncher) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        async with make_pool(launcher, port_range=(port, port)) as pool:
            with pytest.raises(SpawnError, match="no free port"):
                async with pool.lease("m1", []):
                    pass
            assert pool.sidecars() == []
    assert launcher.specs == []


async def test_a_warm_lease_costs_well_under_a_millisecond(pool: Pool) -> None:
    async with pool.lease("m1", []):
        pass
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        async with pool.lease("m1", []):
            pass
    per_lease = (time.perf_counter() - t0) / n
    assert per_lease < 1e-3, f"{per_lease * 1e6:.0f} µs per warm lease"


async def test_one_port_is_enough_to_swap_back_and_forth(launcher: FakeLauncher) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with make_pool(launcher, max_sidecars=1, port_range=(port, port)) as pool:
        for model in ("m1", "m2", "m1"):
            async with pool.lease(model, []) as lease:
                assert lease.port == port
    assert [spec.port for spec in launcher.specs] == [port] * 3


async def test_overlapping_swaps_start_the_next_child_before_the_last_one_exits(
    launcher: FakeLauncher,
) -> None:
    async with make_pool(launcher, max_sidecars=1, overlap_swaps=True) as pool:
        async with pool.lease("m1", []):
            pass
        first = launcher.children[0]
        exit_now = first.exit
        first.exit = lambda code: None  # type: ignore[method-assign]  # slow to exit
        async with pool.lease("m2", []):
            assert first.stop_calls == 1
            assert first.returncode is None
            assert launcher.max_live == 2
        exit_now(-15)
        await until(lambda: len(pool.sidecars()) == 1)
        # a third model: m1 must wait for m2 to exit only if another is still exiting
        async with pool.lease("m1", []):
            pass
        assert launcher.max_live == 2


async def test_overlapping_swaps_on_a_single_port_wait_for_it(launcher: FakeLauncher) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with make_pool(
        launcher, max_sidecars=1, port_range=(port, port), overlap_swaps=True
    ) as pool:
        for model in ("m1", "m2", "m1"):
            async with pool.lease(model, []) as lease:
                assert lease.port == port
    assert launcher.max_live == 1


async def test_a_start_stopped_before_it_ran_still_reports_gone(launcher: FakeLauncher) -> None:
    async with make_pool(launcher, max_sidecars=1) as pool:
        key = sidecar_key("m1", merge_flags(BASE, []))
        pool._hold(key, CATALOG.get("m1"), merge_flags(BASE, []))
        pool._sidecars.start(key, CATALOG.get("m1"), merge_flags(BASE, []))
        pool._sidecars.stop(key, "requested")
        await until(lambda: len(pool._sidecars) == 0)
        assert not launcher.children
