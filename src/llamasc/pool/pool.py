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
from llamasc.errors import (
    CapacityError,
    NotFoundError,
    RequestError,
    ShuttingDownError,
    SpawnError,
)
from llamasc.flags import merge_flags, sidecar_key
from llamasc.pool.child import Child, Launcher, Lease, SidecarInfo
from llamasc.pool.children import Children
from llamasc.pool.config import PoolConfig
from llamasc.pool.scheduler import Effect, Grant, Reject, Scheduler, Start, Stop

log = logging.getLogger(__name__)

_KEY_CACHE_SIZE = 4096
_HEX = frozenset("0123456789abcdef")


class Pool:
    """A bounded pool of llama-server children, one per (model, canonical flags) key."""

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
        # told each child's transitions (starting, ready, stopping, exited, failed): metrics
        self.on_sidecar: Callable[[Child, str, BaseException | None], None] | None = None
        if launcher is None:
            from llamasc.process import LlamaServer

            launcher = LlamaServer.start
        self._sched = Scheduler(
            config.max_sidecars,
            config.queue_timeout,
            max_waiters=config.max_queue,
            overlap=1 if config.overlap_swaps else 0,
        )
        self._children = Children(config, self.binary, launcher, self)
        # what each key runs, kept while a request waits for it
        self._specs: dict[str, tuple[ModelEntry, tuple[str, ...]]] = {}
        self._spec_refs: Counter[str] = Counter()
        self._keys: dict[tuple[str, tuple[str, ...]], tuple[str, ModelEntry, tuple[str, ...]]] = {}
        self._waiting: dict[int, asyncio.Future[Child]] = {}
        self._req_ids = itertools.count(1)
        self._events: deque[tuple[Callable[..., list[Effect]], tuple[Any, ...]]] = deque()
        self._dispatching = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Reap children a crashed daemon left behind, then start watching health."""
        await self._children.open()
        if self.config.health_interval > 0 and self._health_task is None:
            self._health_task = asyncio.create_task(
                self._children.health_loop(), name="pool-health"
            )

    async def close(self, grace: float | None = None) -> None:
        """Stop every child and wait until all are gone. Idempotent; later leases fail."""
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
            self._children.grace = grace
        if self._health_task is not None:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
        children = list(self._children)
        self._dispatch(self._sched.shutdown, time.monotonic())
        for child in children:
            await child.gone.wait()
        await self._children.settle()
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
        entry = self.catalog.get(model_id)
        merged = merge_flags(self.base_args, user_flags)
        resolved = (sidecar_key(model_id, merged), entry, merged)
        if len(self._keys) >= _KEY_CACHE_SIZE:
            self._keys.clear()
        self._keys[(model_id, user_flags)] = resolved
        return resolved

    async def _acquire(self, model_id: str, user_flags: tuple[str, ...]) -> Lease:
        key, entry, merged = self._resolve(model_id, user_flags)
        req = next(self._req_ids)
        effects = self._sched.request(req, key, time.monotonic())
        if len(effects) == 1 and type(effects[0]) is Grant:  # the fast path: it is ready
            return Lease(self, req, self._children[key])
        fut: asyncio.Future[Child] = asyncio.get_running_loop().create_future()
        self._waiting[req] = fut
        self._hold(key, entry, merged)
        try:
            self._feed(effects)
            child = await fut
        except asyncio.CancelledError:
            # a grant may have landed just before the cancellation: release covers both
            self._dispatch(self._sched.released, req, time.monotonic())
            raise
        finally:
            del self._waiting[req]
            self._drop(key)
        return Lease(self, req, child)

    def _release(self, lease: Lease) -> None:
        if lease.released:
            return
        lease.released = True
        lease.child.requests_served += 1
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
                    fut.set_result(self._children[e.key])
            elif isinstance(e, Reject):
                fut = self._waiting.get(e.req_id)
                if fut is not None and not fut.done():
                    fut.set_exception(self._rejection(e))
            elif isinstance(e, Start):
                entry, merged = self._specs[e.key]
                self._children.start(e.key, entry, merged)
            elif isinstance(e, Stop):
                self._children.stop(e.key, e.reason)

    def _rejection(self, e: Reject) -> BaseException:
        if e.reason == "shutting_down":
            return ShuttingDownError("llamasc is shutting down")
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

    # ------------------------- ChildEvents: what self._children reports (not for callers)

    def child_ready(self, key: str) -> None:
        self._dispatch(self._sched.ready, key, time.monotonic())

    def child_failed(self, key: str, error: BaseException) -> None:
        self._dispatch(self._sched.start_failed, key, error, time.monotonic())

    def child_gone(self, key: str, *, requested: bool) -> None:
        event = self._sched.stopped if requested else self._sched.exited
        self._dispatch(event, key, time.monotonic())

    def child_unhealthy(self, key: str) -> None:
        self._dispatch(self._sched.stop_requested, key, time.monotonic())

    def sidecar_state(self, child: Child, state: str, error: BaseException | None = None) -> None:
        if self.on_sidecar is not None:
            try:
                self.on_sidecar(child, state, error)
            except Exception:
                log.exception("pool on_sidecar callback failed")

    def children_changed(self) -> None:
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
        """Wake up exactly when the oldest request waiting for room times out."""
        deadline = self._sched.next_deadline() if self._sched.waiting() else None
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

    # -------------------------------------------------------------- operator view

    def sidecars(self) -> list[SidecarInfo]:
        """A snapshot of every live child, oldest first."""
        return sorted((self._info(c) for c in self._children), key=lambda i: i.started)

    def find(self, key_prefix: str) -> SidecarInfo:
        """The sidecar whose hash starts with ``key_prefix`` (at least 8 hex characters)."""
        return self._info(self._find_child(key_prefix))

    async def stop_sidecar(self, key_prefix: str) -> SidecarInfo:
        """Stop one sidecar (requests in flight on it fail) and wait until it is gone."""
        return (await self._stop_children([self._find_child(key_prefix)]))[0]

    async def stop_model(self, model_id: str) -> list[SidecarInfo]:
        """Stop every sidecar of ``model_id``; UnknownModelError if nobody configured it."""
        self.catalog.get(model_id)
        return await self._stop_children([c for c in self._children if c.model_id == model_id])

    async def stop_all(self) -> list[SidecarInfo]:
        """Stop every sidecar; the pool stays open and starts new ones on demand."""
        return await self._stop_children(list(self._children))

    def logs(self, key_prefix: str, n: int = 200) -> list[str]:
        """The last ``n`` log lines of a sidecar."""
        child = self._find_child(key_prefix)
        return child.handle.tail(n) if child.handle is not None else []

    async def _stop_children(self, children: list[Child]) -> list[SidecarInfo]:
        infos = [self._info(c) for c in children]
        now = time.monotonic()
        for child in children:
            self._dispatch(self._sched.stop_requested, child.key, now)
        for child in children:
            await child.gone.wait()
        return [replace(i, state="stopped", in_flight=0) for i in infos]

    def _find_child(self, key_prefix: str) -> Child:
        prefix = key_prefix.strip().lower()
        if len(prefix) < 8 or not set(prefix) <= _HEX:
            raise RequestError(f"sidecar id must be at least 8 hex characters, got {key_prefix!r}")
        found = [c for c in self._children if c.key.startswith(prefix)]
        if not found:
            raise NotFoundError(f"no sidecar {key_prefix!r}")
        if len(found) > 1:
            raise RequestError(f"sidecar id {key_prefix!r} is ambiguous ({len(found)} match)")
        return found[0]

    def _info(self, child: Child) -> SidecarInfo:
        sc = self._sched.sidecars.get(child.key)
        state = "stopping" if child.stopping else ("ready" if child.handle else "starting")
        last_used = None
        if sc is not None and child.handle is not None:
            last_used = time.time() - (time.monotonic() - sc.last_used)
        return SidecarInfo(
            hash=child.key,
            model=child.model_id,
            flags=child.flags,
            port=child.port,
            pid=child.handle.pid if child.handle is not None else None,
            state=state,
            started=child.started,
            ready_at=child.ready_at,
            last_used=last_used,
            in_flight=sc.in_flight if sc is not None else 0,
            requests_served=child.requests_served,
            last_timings=child.last_timings,
            restarts=child.restarts,
        )


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
