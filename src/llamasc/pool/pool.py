"""The loop that acts: feeds events to the scheduler and performs the effects it decides.

Everything runs on one asyncio event loop and every scheduler call is synchronous, so the
scheduler's state needs no lock: an event and the effects it causes are handled to the end
before anything else runs. Only the slow parts (spawning, stopping, waiting for an exit,
health checks) are tasks, and each reports back as an event. A warm request for a ready key
is one dict lookup and one scheduler call: no task, no future, no lock.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from llamasc.config import ModelCatalog, ModelEntry
from llamasc.config.scheduling import ModelScheduling
from llamasc.errors import (
    CapacityError,
    ConcurrencyLimitError,
    ConfigError,
    FlagError,
    InsufficientMemoryError,
    LlamascError,
    NotFoundError,
    RequestError,
    ShuttingDownError,
    SpawnError,
)
from llamasc.flags import merge_flags, sidecar_key
from llamasc.pool.admission import SLOTS, Profile, check_pins
from llamasc.pool.budget import default_budget, measure
from llamasc.pool.config import PoolConfig
from llamasc.pool.effects import Effect, Grant, Reject, Start, Stop
from llamasc.pool.memory import Projector
from llamasc.pool.model_args import model_base_args
from llamasc.pool.scheduler import Scheduler
from llamasc.pool.sidecar import Launcher, Lease, Sidecar, SidecarInfo
from llamasc.pool.sidecars import Sidecars

log = logging.getLogger(__name__)

_KEY_CACHE_SIZE = 4096
_HEX = frozenset("0123456789abcdef")


class Pool:
    """A bounded pool of llama-server sidecars, one per (model, canonical flags) key."""

    def __init__(
        self,
        config: PoolConfig,
        catalog: ModelCatalog,
        binary: Path,
        base_args: Sequence[str],
        *,
        launcher: Launcher | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.binary = Path(binary)
        self.base_args = tuple(base_args)
        self.on_change: Callable[[], None] | None = None
        # told each sidecar's transitions (starting, ready, stopping, exited, failed): metrics
        self.on_sidecar: Callable[[Sidecar, str, BaseException | None], None] | None = None
        if launcher is None:
            from llamasc.process import LlamaServer

            launcher = LlamaServer.start
        budget = config.memory_budget
        self.memory_budget: dict[str, int] = default_budget() if budget is None else dict(budget)
        self._projector = Projector(self.binary) if self.memory_budget else None
        self._sched = Scheduler(
            config.max_sidecars,
            config.queue_timeout,
            max_waiters=config.max_queue,
            overlap=1 if config.overlap_swaps else 0,
            budget=self.memory_budget,
            max_wait=config.max_wait,
            min_resident=config.min_resident,
            groups=config.groups,
        )
        self._model_base: dict[str, tuple[str, ...]] = {}
        self._profiles: dict[str, Profile] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._sidecars = Sidecars(config, self.binary, launcher, self)
        # what each key runs, kept while a request waits for it
        self._specs: dict[str, tuple[ModelEntry, tuple[str, ...]]] = {}
        self._spec_refs: Counter[str] = Counter()
        self._keys: dict[tuple[str, tuple[str, ...]], tuple[str, ModelEntry, tuple[str, ...]]] = {}
        self._waiting: dict[int, asyncio.Future[Sidecar]] = {}
        self._req_ids = itertools.count(1)
        self._events: deque[tuple[Callable[..., list[Effect]], tuple[Any, ...]]] = deque()
        self._dispatching = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._started_with: dict[str, ModelEntry] = {}  # what each live key was started as

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Reap sidecars a crashed daemon left behind, then start watching health."""
        await self._sidecars.open()
        if self.config.health_interval > 0 and self._health_task is None:
            self._health_task = asyncio.create_task(
                self._sidecars.health_loop(), name="pool-health"
            )
        await self._check_pins()
        self._preload()

    async def close(self, grace: float | None = None) -> None:
        """Stop every sidecar and wait until all are gone. Idempotent; later leases fail."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(grace), name="pool-close")
        await asyncio.shield(self._closing)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _close(self, grace: float | None) -> None:
        if grace is not None:
            self._sidecars.grace = grace
        if self._health_task is not None:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        sidecars = list(self._sidecars)
        self._dispatch(self._sched.shutdown, time.monotonic())
        for sidecar in sidecars:
            await sidecar.gone.wait()
        await self._sidecars.settle()
        if self._timer is not None:
            self._timer.cancel()

    # --------------------------------------------------------------------- leases

    def lease(self, model_id: str, user_flags: Sequence[str]) -> _LeaseContext:
        """``async with pool.lease(model, flags) as lease:`` a ready sidecar for the request.

        ``user_flags`` are validated canonical tokens; they are merged over the base args.
        Raises UnknownModelError, CapacityError, SpawnError, ReadinessTimeoutError or
        ShuttingDownError on entry. The lease is released on exit, cancellation included.
        """
        return _LeaseContext(self, model_id, tuple(user_flags))

    def _resolve(
        self, model_id: str, user_flags: tuple[str, ...]
    ) -> tuple[str, ModelEntry, tuple[str, ...]]:
        cached = self._keys.get((model_id, user_flags))
        if cached is not None:
            return cached
        entry = self.catalog.get(model_id)  # an alias finds its model's entry (and sidecars)
        if entry.opaque is not None:  # another program: run as configured, no flags
            if user_flags:
                raise FlagError(
                    f"{entry.id} is not a llama-server model (its cmd runs "
                    f"{entry.path.name}): it takes no X-Agent-Flags"
                )
            none: tuple[str, ...] = ()
            self._keys[(model_id, user_flags)] = (sidecar_key(entry.key_id, none), entry, none)
            return self._keys[(model_id, user_flags)]
        base = self._base_for(entry.id)
        if entry.args:  # a llama-swap cmd's arguments (validated by the daemon), or a reload's
            base = merge_flags(base, entry.args)
        base = model_base_args(entry, base)  # discovery's: projector, embedding, trained ctx
        merged = merge_flags(base, user_flags)
        resolved = (sidecar_key(entry.key_id, merged), entry, merged)
        if len(self._keys) >= _KEY_CACHE_SIZE:
            self._keys.clear()
        self._keys[(model_id, user_flags)] = resolved
        return resolved

    async def _acquire(self, model_id: str, user_flags: tuple[str, ...]) -> Lease:
        key, entry, merged = self._resolve(model_id, user_flags)
        req = next(self._req_ids)
        profile = self._profiles.get(key)
        if profile is None:  # first use of this key: project its memory (cached) once
            profile = await self._profile(key, model_id, entry, merged, bool(user_flags))
        effects = self._sched.request(req, key, time.monotonic(), profile)
        if len(effects) == 1 and type(effects[0]) is Grant:  # the fast path: it is ready
            return Lease(self, req, self._sidecars[key])
        fut: asyncio.Future[Sidecar] = asyncio.get_running_loop().create_future()
        self._waiting[req] = fut
        self._hold(key, entry, merged)
        try:
            self._feed(effects)
            sidecar = await fut
        except asyncio.CancelledError:
            # a grant may have landed just before the cancellation: release covers both
            self._dispatch(self._sched.released, req, time.monotonic())
            raise
        finally:
            del self._waiting[req]
            self._drop(key)
        return Lease(self, req, sidecar)

    def _release(self, lease: Lease) -> None:
        if lease.released:
            return
        lease.released = True
        lease.sidecar.requests_served += 1
        self._dispatch(self._sched.released, lease.req_id, time.monotonic())

    # -------------------------------------------------------------------- effects

    def _dispatch(self, event: Callable[..., list[Effect]], *args: Any) -> None:
        """Feed one event; effects may feed more, which are queued, never nested."""
        self._events.append((event, args))
        self._pump()

    def _feed(self, effects: list[Effect]) -> None:
        """Perform effects already decided (by a call made outside ``_dispatch``)."""
        self._events.append((_decided, (effects,)))
        self._pump()

    def _pump(self) -> None:
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._events:
                fn, fargs = self._events.popleft()
                effects = fn(*fargs)
                if effects:
                    self._perform(effects)
        finally:
            self._dispatching = False
        self._arm_timer()

    def _perform(self, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Grant):
                fut = self._waiting.get(e.req_id)
                if fut is None or fut.done():  # the client left: give the slot back
                    self._dispatch(self._sched.released, e.req_id, time.monotonic())
                else:
                    fut.set_result(self._sidecars[e.key])
            elif isinstance(e, Reject):
                fut = self._waiting.get(e.req_id)
                if fut is not None and not fut.done():
                    fut.set_exception(self._rejection(e))
            elif isinstance(e, Start):
                entry, merged = self._specs[e.key]
                self._started_with[e.key] = entry
                self._sidecars.start(e.key, entry, merged)
            elif isinstance(e, Stop):
                self._sidecars.stop(e.key, e.reason)

    def _rejection(self, e: Reject) -> BaseException:
        if e.reason == "shutting_down":
            return ShuttingDownError("llamasc is shutting down")
        if e.reason == "insufficient_memory":
            return InsufficientMemoryError(e.detail)
        if e.reason == "concurrency_limit":
            return ConcurrencyLimitError(
                f"the model's concurrency limit stayed full for {self.config.queue_timeout:g}s; "
                "try again later"
            )
        if e.reason == "capacity":
            n = self.config.max_sidecars
            if e.detail == "queue_full":
                return CapacityError(
                    f"too many requests waiting ({self.config.max_queue}); try again later"
                )
            return CapacityError(
                f"all {n} sidecar slot(s) stayed busy for {self.config.queue_timeout:g}s "
                "(MAX_SIDECARS); try again later"
            )
        if e.error is None:
            return SpawnError("llama-server exited before it was ready")
        try:  # each waiter raises its own copy, so tracebacks do not pile up on one object
            return copy.copy(e.error)
        except Exception:
            return e.error

    # ------------------------- SidecarEvents: what self._sidecars reports (not for callers)

    def sidecar_ready(self, key: str) -> None:
        self._dispatch(self._sched.ready, key, time.monotonic())
        sidecar = self._sidecars.find(key)
        if self.memory_budget and sidecar is not None and sidecar.handle is not None:
            held = measure(sidecar.handle.pid)
            sidecar.memory_measured = held
            self._dispatch(self._sched.measured, key, held)

    def sidecar_failed(self, key: str, error: BaseException) -> None:
        self._dispatch(self._sched.start_failed, key, error, time.monotonic())

    def sidecar_gone(self, key: str, *, requested: bool) -> None:
        event = self._sched.stopped if requested else self._sched.exited
        self._dispatch(event, key, time.monotonic())

    def sidecar_unhealthy(self, key: str) -> None:
        self._dispatch(self._sched.stop_requested, key, time.monotonic())

    def sidecar_timed_out(self, sidecar: Sidecar) -> None:
        """A request to ``sidecar`` timed out upstream (see ``Lease.report_timeout``)."""
        self._sidecars.health_failed(sidecar, "timed out answering a request, health check")

    def sidecar_state(
        self, sidecar: Sidecar, state: str, error: BaseException | None = None
    ) -> None:
        if self.on_sidecar is not None:
            try:
                self.on_sidecar(sidecar, state, error)
            except Exception:
                log.exception("pool on_sidecar callback failed")

    def sidecars_changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("pool on_change callback failed")

    # ------------------------------------------------------------------- plumbing

    def _hold(self, key: str, entry: ModelEntry, merged: tuple[str, ...]) -> None:
        self._specs[key] = (entry, merged)
        self._spec_refs[key] += 1

    def _drop(self, key: str) -> None:
        self._spec_refs[key] -= 1
        if self._spec_refs[key] <= 0:
            del self._spec_refs[key]
            self._specs.pop(key, None)

    def _arm_timer(self) -> None:
        """Wake up exactly when the scheduler next has something to do (a queue timeout,
        the starvation bound, the end of a min-resident stay, a TTL)."""
        deadline = self._sched.next_deadline(time.monotonic())
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer, deadline)

    def _on_timer(self, deadline: float) -> None:
        self._timer = None
        self._timer_at = None
        self._dispatch(self._sched.tick, max(deadline, time.monotonic()))

    # ------------------------------------------------------------ model rescans

    def replace_catalog(self, catalog: ModelCatalog) -> list[str]:
        """Serve ``catalog`` from now on. Sidecars of models that went away or changed (a new
        file, size, mtime or projector) are retired: they finish their requests in flight,
        then stop; the next request starts a fresh one. Returns the retired keys.

        Used by config reloads (a changed model's entry also has a new key) and model rescans.
        """
        self.catalog = catalog
        self._keys.clear()
        self._model_base.clear()
        for key, (entry, merged) in list(self._specs.items()):
            if entry.id in catalog:  # waiters not started yet get the new entry
                self._specs[key] = (catalog.models[entry.id], merged)
        live = {c.key for c in self._sidecars}
        for key in [k for k in self._started_with if k not in live]:
            del self._started_with[key]
        retired: list[str] = []
        now = time.monotonic()
        for sidecar in self._sidecars:
            new = catalog.models.get(sidecar.model_id)
            if sidecar.stopping or (new is not None and new == self._started_with.get(sidecar.key)):
                continue
            log.info(
                "%s for %s: model %s; stopping it once idle",
                *(sidecar.key[:12], sidecar.model_id, "removed" if new is None else "changed"),
            )
            retired.append(sidecar.key)
            self._dispatch(self._sched.retire, sidecar.key, now)
        return retired

    # -------------------------------------------------------------- operator view

    def sidecars(self) -> list[SidecarInfo]:
        """A snapshot of every live sidecar, oldest first."""
        return sorted((self._info(c) for c in self._sidecars), key=lambda i: i.started)

    def find(self, key_prefix: str) -> SidecarInfo:
        """The sidecar whose hash starts with ``key_prefix`` (at least 8 hex characters)."""
        return self._info(self._find_sidecar(key_prefix))

    async def stop_sidecar(self, key_prefix: str) -> SidecarInfo:
        """Stop one sidecar (requests in flight on it fail) and wait until it is gone."""
        return (await self._stop_sidecars([self._find_sidecar(key_prefix)]))[0]

    async def stop_model(self, model_id: str) -> list[SidecarInfo]:
        """Stop every sidecar of ``model_id``; UnknownModelError if nobody configured it."""
        self.catalog.get(model_id)
        return await self._stop_sidecars([c for c in self._sidecars if c.model_id == model_id])

    async def stop_all(self) -> list[SidecarInfo]:
        """Stop every sidecar; the pool stays open and starts new ones on demand."""
        return await self._stop_sidecars(list(self._sidecars))

    def logs(self, key_prefix: str, n: int = 200) -> list[str]:
        """The last ``n`` log lines of a sidecar."""
        sidecar = self._find_sidecar(key_prefix)
        return sidecar.handle.tail(n) if sidecar.handle is not None else []

    async def _stop_sidecars(self, sidecars: list[Sidecar]) -> list[SidecarInfo]:
        infos = [self._info(c) for c in sidecars]
        now = time.monotonic()
        for sidecar in sidecars:
            self._dispatch(self._sched.stop_requested, sidecar.key, now)
        for sidecar in sidecars:
            await sidecar.gone.wait()
        return [replace(i, state="stopped", in_flight=0) for i in infos]

    def _find_sidecar(self, key_prefix: str) -> Sidecar:
        prefix = key_prefix.strip().lower()
        if len(prefix) < 8 or not set(prefix) <= _HEX:
            raise RequestError(f"sidecar id must be at least 8 hex characters, got {key_prefix!r}")
        found = [c for c in self._sidecars if c.key.startswith(prefix)]
        if not found:
            raise NotFoundError(f"no sidecar {key_prefix!r}")
        if len(found) > 1:
            raise RequestError(f"sidecar id {key_prefix!r} is ambiguous ({len(found)} match)")
        return found[0]

    def _info(self, sidecar: Sidecar) -> SidecarInfo:
        sc = self._sched.sidecars.get(sidecar.key)
        state = "stopping" if sidecar.stopping else ("ready" if sidecar.handle else "starting")
        last_used = None
        if sc is not None and sidecar.handle is not None:
            last_used = time.time() - (time.monotonic() - sc.last_used)
        return SidecarInfo(
            hash=sidecar.key,
            model=sidecar.model_id,
            flags=sidecar.flags,
            port=sidecar.port,
            pid=sidecar.handle.pid if sidecar.handle is not None else None,
            state=state,
            started=sidecar.started,
            ready_at=sidecar.ready_at,
            last_used=last_used,
            in_flight=sc.in_flight if sc is not None else 0,
            requests_served=sidecar.requests_served,
            last_timings=sidecar.last_timings,
            restarts=sidecar.restarts,
            memory_projected=(
                {d: int(v) for d, v in sc.profile.need.items()}
                if sc is not None and sc.profile.need
                else None
            ),
            memory_measured=sidecar.memory_measured,
        )

    def memory(self) -> dict[str, dict[str, int]]:
        """Budget, what the live sidecars hold (projected or measured, the larger) and what
        is left, per device; empty when scheduling by count only."""
        if not self.memory_budget:
            return {}
        held = self._sched.held()
        return {
            d: {"budget": b, "held": int(held.get(d, 0)), "free": int(b - held.get(d, 0))}
            for d, b in self.memory_budget.items()
        }

    def loading_state(self, model_id: str, user_flags: Sequence[str]) -> str | None:
        """For a model with ``send_loading_state``: what a request for it would wait to start
        (``"smol (241 MiB)"``), or None when its sidecar is up (or the model is not one
        with the setting, or unknown: the lease says why)."""
        try:
            key, entry, _ = self._resolve(model_id, tuple(user_flags))
        except LlamascError:
            return None
        if not self._policy(entry.id).send_loading_state:
            return None
        sidecar = self._sidecars.find(key)
        if sidecar is not None and sidecar.handle is not None and not sidecar.stopping:
            return None
        profile = self._profiles.get(key)
        need = max((v for d, v in profile.need.items() if d != SLOTS), default=0) if profile else 0
        return f"{entry.id} ({need / 2**20:.0f} MiB)" if need else entry.id

    def slot_cache_sizes(self) -> dict[str, int]:
        """Sidecar key -> bytes of its saved slot files (empty with the slot cache off)."""
        cache = self._sidecars.slot_cache
        return cache.sizes() if cache is not None else {}

    # --------------------------------------------------------------- scheduling plumbing

    def _policy(self, model_id: str) -> ModelScheduling:
        return self.config.models.get(model_id) or _NO_POLICY

    def _base_for(self, model_id: str) -> tuple[str, ...]:
        """BASE_ARGS with the model's own operator ``args`` over them."""
        base = self._model_base.get(model_id)
        if base is None:
            args = self._policy(model_id).args
            base = merge_flags(self.base_args, args) if args else self.base_args
            self._model_base[model_id] = base
        return base

    async def _profile(
        self, key: str, model_id: str, entry: ModelEntry, merged: tuple[str, ...], custom: bool
    ) -> Profile:
        pol = self._policy(model_id)
        need: dict[str, int] = {}
        if self._projector is not None and entry.opaque is None:  # opaque: counted only
            need = await self._projector.need(key, entry.path, merged, entry.env)
        profile = Profile(
            model=model_id,
            need=need,
            priority=pol.priority,
            ttl=self.config.ttl if pol.ttl is None else pol.ttl,
            pin=pol.pin and not custom,  # a pin keeps the model's own sidecar, not variants
            concurrency=pol.concurrency,
            send_loading_state=pol.send_loading_state,
        )
        if len(self._profiles) >= _KEY_CACHE_SIZE:
            self._profiles.clear()
        self._profiles[key] = profile
        return profile

    async def _check_pins(self) -> None:
        pinned = [m for m, pol in self.config.models.items() if pol.pin and m in self.catalog]
        if not pinned:
            return
        needs: dict[str, dict[str, float]] = {}
        for model_id in pinned:
            key, entry, merged = self._resolve(model_id, ())
            needs[model_id] = dict((await self._profile(key, model_id, entry, merged, False)).need)
        problems = check_pins(needs, self.memory_budget, self.config.max_sidecars)
        if problems:
            raise ConfigError("pin: " + "; ".join(problems))

    def _preload(self) -> None:
        """Start the preloaded (and pinned) models in the background."""
        pinned = [m for m, pol in self.config.models.items() if pol.pin and m in self.catalog]
        for model_id in dict.fromkeys([*self.config.preload, *pinned]):
            task = asyncio.create_task(self._preload_one(model_id), name=f"preload-{model_id}")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _preload_one(self, model_id: str) -> None:
        started = time.monotonic()
        try:
            async with self.lease(model_id, ()):
                pass
        except LlamascError as exc:
            why = "; ".join(exc.details[-5:])
            log.error("preload of %s failed: %s%s", model_id, exc, f" ({why})" if why else "")
            return
        log.info("preloaded %s in %.2fs", model_id, time.monotonic() - started)


_NO_POLICY = ModelScheduling()


def _decided(effects: list[Effect]) -> list[Effect]:
    return effects


class _LeaseContext:
    """``async with`` around one lease (a plain class: cheaper than a generator)."""

    __slots__ = ("_flags", "_lease", "_model_id", "_pool")

    def __init__(self, pool: Pool, model_id: str, flags: tuple[str, ...]) -> None:
        self._pool = pool
        self._model_id = model_id
        self._flags = flags
        self._lease: Lease | None = None

    async def __aenter__(self) -> Lease:
        self._lease = await self._pool._acquire(self._model_id, self._flags)
        return self._lease

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._lease is not None:
            self._pool._release(self._lease)


__all__ = ["Pool"]
