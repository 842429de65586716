"""The pool's hands: start and stop the sidecars, watch them, report what happens.

Nothing here decides anything. ``Sidecars.start``/``stop`` carry out the scheduler's Start and
Stop; each outcome (ready, failed start, exit, failed health checks) goes back through
:class:`SidecarEvents`, which the pool turns into scheduler events. A sidecar's port is freed,
and its state-file entry dropped, only once the sidecar is gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from llamasc.config import ModelEntry
from llamasc.errors import LlamascError, SpawnError
from llamasc.pool.config import PoolConfig
from llamasc.pool.ports import PortAllocator
from llamasc.pool.sidecar import Launcher, ServerHandle, Sidecar
from llamasc.pool.slotcache import SlotCache, SlotReport
from llamasc.pool.upstream import Upstream
from llamasc.process.opaque import OpaqueBackend, OpaqueSpec
from llamasc.process.ports import retry_lost_port
from llamasc.process.rpc import check_workers, probe, rpc_workers
from llamasc.process.spec import LaunchSpec, build_argv

if TYPE_CHECKING:
    from llamasc.process.reaper import StateFile

log = logging.getLogger(__name__)


# Stops that make room (not an operator's stop, a crash, a retired model or the shutdown): the
# sidecar's slots are saved first, so the same key starting again skips the prefill.
SAVE_ON = frozenset({"evict", "memory", "group", "drain", "ttl"})


class SidecarEvents(Protocol):
    """What the pool hears from its sidecars."""

    def sidecar_ready(self, key: str) -> None: ...
    def sidecar_failed(self, key: str, error: BaseException) -> None: ...
    def sidecar_gone(self, key: str, *, requested: bool) -> None: ...
    def sidecar_unhealthy(self, key: str) -> None: ...
    def sidecars_changed(self) -> None: ...
    def sidecar_state(
        self, sidecar: Sidecar, state: str, error: BaseException | None = None
    ) -> None: ...


class Sidecars:
    """The live sidecars by key, and the tasks that start, stop and watch them."""

    def __init__(
        self, config: PoolConfig, binary: Path, launcher: Launcher, events: SidecarEvents
    ) -> None:
        self.config = config
        self.binary = binary
        self.grace = config.stop_grace
        self._launcher = launcher
        self._events = events
        self._ports = PortAllocator(config.port_range, config.host)
        self._by_key: dict[str, Sidecar] = {}
        self._starts: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._state_file: StateFile | None = None
        self.slot_cache: SlotCache | None = None
        if config.slot_cache is not None:
            self.slot_cache = SlotCache(
                config.slot_cache,
                min_tokens=config.slot_cache_min_tokens,
                max_bytes=config.slot_cache_size,
            )
        self.last_save: dict[str, SlotReport] = {}  # key -> its last save (benchmarks, logs)
        self.last_restore: dict[str, SlotReport] = {}

    def __getitem__(self, key: str) -> Sidecar:
        return self._by_key[key]

    def find(self, key: str) -> Sidecar | None:
        return self._by_key.get(key)

    def __iter__(self) -> Iterator[Sidecar]:
        return iter(list(self._by_key.values()))

    def __len__(self) -> int:
        return len(self._by_key)

    async def open(self) -> None:
        """Reap what a crashed daemon left behind; record our own sidecars from now on."""
        if self.config.state_file is not None:
            from llamasc.process.reaper import StateFile, reap_leftovers

            await asyncio.to_thread(reap_leftovers, self.config.state_file)
            self._state_file = StateFile(self.config.state_file)
        if self.slot_cache is not None and not await asyncio.to_thread(
            supports_slot_save, self.binary
        ):
            log.info("slot cache off: %s has no --slot-save-path", self.binary.name)
            self.slot_cache = None

    async def settle(self) -> None:
        """Wait until every start, stop and watch task has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ---------------------------------------------------------------------- start

    def start(self, key: str, entry: ModelEntry, merged: tuple[str, ...]) -> None:
        """Spawn the sidecar of ``key``; ``sidecar_ready`` or ``sidecar_failed`` follows."""
        sidecar = Sidecar(key, entry.id, merged, 0, restarts=self._starts[key])
        self._starts[key] += 1
        self._by_key[key] = sidecar
        sidecar.start_task = self._spawn(self._run_start(sidecar, entry), f"start-{key[:8]}")
        self._events.sidecar_state(sidecar, "starting")
        self._events.sidecars_changed()

    async def _allocate_port(self) -> int:
        """A free port; with a full range, wait for one held by a sidecar on its way out.

        Overlapping swaps start a sidecar while the evicted one still exits, so a range of
        one port is momentarily full: the start then waits for that exit instead of failing.
        """
        while True:
            try:
                return self._ports.allocate()
            except SpawnError:
                exiting = [c.gone for c in self._by_key.values() if c.stopping]
                if not exiting:
                    raise
                waits = [asyncio.ensure_future(ev.wait()) for ev in exiting]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()

    def _spec(self, sidecar: Sidecar, entry: ModelEntry) -> LaunchSpec | OpaqueSpec:
        log_dir = self.config.log_dir
        if entry.opaque is not None:  # another program's server (process.opaque)
            o = entry.opaque
            return OpaqueSpec(
                model_id=entry.id, argv=o.argv, port=sidecar.port, proxy=o.proxy,
                check_endpoint=o.check_endpoint, cmd_stop=o.cmd_stop,
                unload_timeout=o.unload_timeout, env=dict(entry.env),
                log_file=None if log_dir is None else log_dir / f"{sidecar.key[:16]}.log",
                label=f"{entry.id}@{sidecar.key[:8]}",
            )  # fmt: skip
        args = sidecar.flags
        if self.slot_cache is not None:
            args += self.slot_cache.launch_args(sidecar.key, sidecar.flags)
        return LaunchSpec(
            binary=self.binary,
            model_path=entry.path,
            args=args,
            port=sidecar.port,
            host=self.config.host,
            env=dict(entry.env),
            log_file=None if log_dir is None else log_dir / f"{sidecar.key[:16]}.log",
            label=f"{entry.id}@{sidecar.key[:8]}",
            alias=entry.id,
        )

    async def _launch(
        self, sidecar: Sidecar, spec: LaunchSpec | OpaqueSpec
    ) -> tuple[ServerHandle, LaunchSpec | OpaqueSpec]:
        """Run the launcher; if another process took the port between our free-port check
        and llama-server's bind, move to another port and try again (twice at most).
        Returns the ready sidecar and the spec it was started with."""

        async def start(port: int) -> tuple[ServerHandle, LaunchSpec | OpaqueSpec]:
            started = dataclasses.replace(spec, port=port)
            timeout = self.config.health_timeout
            if isinstance(started, OpaqueSpec):
                return await OpaqueBackend.launch(started, ready_timeout=timeout), started
            return await self._launcher(started, ready_timeout=timeout), started

        def move(old: int) -> int:
            new_port = self._ports.allocate()
            self._ports.release(old)  # the sidecar exited: nobody of ours holds it
            sidecar.port = new_port
            return new_port

        return await retry_lost_port(start, spec.port, move)

    async def _run_start(self, sidecar: Sidecar, entry: ModelEntry) -> None:
        key = sidecar.key
        try:
            await check_workers(rpc_workers(sidecar.flags))  # 502 naming a worker that is down
            sidecar.port = await self._allocate_port()
            spec = self._spec(sidecar, entry)
            log.info(
                "starting %s for %s on port %d: %s",
                *(key[:12], entry.id, sidecar.port, " ".join(sidecar.flags)),
            )
            handle, spec = await self._launch(sidecar, spec)
        except asyncio.CancelledError:
            # a Stop aborted the start; the launcher killed its process on the way out
            self._gone(sidecar)
            return
        except LlamascError as exc:  # no port, flags the sidecar may not get, a failed start
            log.warning("%s for %s did not start: %s", key[:12], sidecar.model_id, exc)
            self._gone(sidecar, failed=exc)
            return
        except Exception as exc:  # a launcher bug must still answer the waiters
            log.exception("%s for %s: launcher failed", key[:12], sidecar.model_id)
            self._gone(sidecar, failed=SpawnError(f"could not start llama-server: {exc}"))
            return
        opaque = isinstance(spec, OpaqueSpec)  # another program: no llama-server slot API
        if self.slot_cache is not None and not opaque:  # before the first request is granted
            try:
                report = await self.slot_cache.restore(handle.base_url, key, sidecar.flags)
            except asyncio.CancelledError:  # a Stop while restoring: no watcher runs yet
                await asyncio.shield(self._kill(handle))
                self._gone(sidecar)
                return
            if report.slots or report.failed:
                self.last_restore[key] = report
        sidecar.handle = handle
        sidecar.upstream = Upstream(handle.base_url, self.config.upstream_timeouts)
        sidecar.ready_at = time.time()
        if self._state_file is not None:
            from llamasc.process.reaper import ChildRecord

            argv = spec.command() if isinstance(spec, OpaqueSpec) else build_argv(spec)
            record = ChildRecord.of(handle.pid, handle.create_time, sidecar.port, sidecar.key, argv)
            self._state_file.add_record(record)
        self._spawn(self._watch(sidecar), f"watch-{sidecar.key[:8]}")
        log.info(
            "%s for %s ready on port %d (pid %d) in %.2fs",
            *(sidecar.key[:12], sidecar.model_id, sidecar.port, handle.pid),
            sidecar.ready_at - sidecar.started,
        )
        self._events.sidecar_state(sidecar, "ready")
        self._events.sidecar_ready(sidecar.key)
        self._events.sidecars_changed()

    # ----------------------------------------------------------------------- stop

    def stop(self, key: str, reason: str) -> None:
        """Stop (or abort the start of) the sidecar of ``key``; ``sidecar_gone`` follows."""
        sidecar = self._by_key.get(key)
        if sidecar is None:  # its start failed before spawning; sidecar_failed was sent
            return
        sidecar.stopping = True
        sidecar.stop_reason = sidecar.stop_reason or reason
        if sidecar.upstream is not None:
            # at shutdown every connection goes now (requests in flight had their grace);
            # otherwise idle ones now, busy ones after their answer
            if reason == "shutdown":
                sidecar.upstream.close()
            else:
                sidecar.upstream.retire()
        log.info("stopping %s for %s (%s)", key[:12], sidecar.model_id, sidecar.stop_reason)
        if sidecar.handle is None:
            if sidecar.start_task is not None:
                sidecar.start_task.cancel()
                # a task cancelled before its first step never runs its own clean-up
                sidecar.start_task.add_done_callback(lambda _: self._gone(sidecar))
        else:
            self._spawn(self._stop_sidecar(sidecar), f"stop-{key[:8]}")
        self._events.sidecar_state(sidecar, "stopping")
        self._events.sidecars_changed()

    async def _stop_sidecar(self, sidecar: Sidecar) -> None:
        assert sidecar.handle is not None
        saves = not isinstance(sidecar.handle, OpaqueBackend) and sidecar.stop_reason in SAVE_ON
        if self.slot_cache is not None and saves:
            report = await self.slot_cache.save(sidecar.handle.base_url, sidecar.key, sidecar.flags)
            self.last_save[sidecar.key] = report
        try:
            await sidecar.handle.stop(self.grace)
        except Exception:  # the watcher still reports the exit; never leave a Stop hanging
            log.exception("stopping %s failed", sidecar.key[:12])

    async def _kill(self, handle: ServerHandle) -> None:
        try:
            await handle.stop(self.grace)
        except Exception:
            log.exception("stopping a child that was restoring its slots failed")

    async def _watch(self, sidecar: Sidecar) -> None:
        assert sidecar.handle is not None
        code = await sidecar.handle.wait()
        uptime = time.time() - sidecar.started
        what = (sidecar.key[:12], sidecar.model_id, code, uptime)
        if sidecar.stopping:
            log.info("%s for %s exited with code %s after %.1fs (%s)", *what, sidecar.stop_reason)
        else:
            tail = "\n".join(sidecar.handle.tail(20))
            log.warning(
                "%s for %s exited unexpectedly with code %s after %.1fs; last lines:\n%s",
                *what,
                tail,
            )
        self._gone(sidecar)

    def _gone(self, sidecar: Sidecar, *, failed: BaseException | None = None) -> None:
        """The sidecar is dead and reaped (or never ran): free its port and tell the pool."""
        if sidecar.gone.is_set():
            return
        if sidecar.port:
            self._ports.release(sidecar.port)
        if self._state_file is not None and sidecar.handle is not None:
            self._state_file.remove(sidecar.handle.pid)
        if self._by_key.get(sidecar.key) is sidecar:
            del self._by_key[sidecar.key]
        if sidecar.upstream is not None:
            sidecar.upstream.close()
        sidecar.gone.set()
        self._events.sidecar_state(sidecar, "exited" if failed is None else "failed", failed)
        if failed is not None:
            self._events.sidecar_failed(sidecar.key, failed)
        else:
            self._events.sidecar_gone(sidecar.key, requested=sidecar.stopping)
        self._events.sidecars_changed()

    # --------------------------------------------------------------------- health

    async def health_loop(self) -> None:
        """Check every ready sidecar each interval; report one that failed too often."""
        interval = self.config.health_interval
        while True:
            await asyncio.sleep(interval)
            ready = [(c, c.handle) for c in self._by_key.values() if c.handle and not c.stopping]
            results = await asyncio.gather(
                *(_healthy(c, h, min(interval, 5.0)) for c, h in ready), return_exceptions=True
            )
            for (sidecar, _), ok in zip(ready, results, strict=True):
                if ok is True:
                    sidecar.health_failures = 0
                    continue
                self.health_failed(sidecar, "failed health check")

    def health_failed(self, sidecar: Sidecar, what: str) -> None:
        """Count one failed check of ``sidecar`` (a health probe, or a request that timed out
        upstream); at the configured count it is stopped as unhealthy and replaced."""
        if sidecar.stopping or self._by_key.get(sidecar.key) is not sidecar:
            return
        sidecar.health_failures += 1
        log.warning(
            "%s for %s %s %d/%d",
            *(sidecar.key[:12], sidecar.model_id, what, sidecar.health_failures),
            self.config.health_failures,
        )
        if sidecar.health_failures >= self.config.health_failures:
            sidecar.stop_reason = "unhealthy"
            self._events.sidecar_unhealthy(sidecar.key)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def supports_slot_save(binary: Path) -> bool:
    """Whether ``binary`` takes ``--slot-save-path`` (read from its ``--help``, cached)."""
    from llamasc.flags.help import table_from_help

    try:
        spec = table_from_help(binary).get("--slot-save-path")
    except LlamascError as exc:
        log.info("cannot read %s --help: %s", binary, exc)
        return False
    return spec is not None and spec.in_binary and not spec.removed


async def _healthy(sidecar: Sidecar, handle: ServerHandle, timeout: float) -> bool:  # noqa: ASYNC109
    """llama-server answers /health, and every RPC worker its model is spread over answers."""
    if not await handle.check_health(timeout):
        return False
    workers = rpc_workers(sidecar.flags)
    return not workers or all(r is None for r in [await probe(w, timeout) for w in workers])


__all__ = ["SidecarEvents", "Sidecars"]
