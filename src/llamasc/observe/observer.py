"""The observer: one object the daemon tells what happens, feeding metrics, events and history.

The relay calls :meth:`Observer.begin` when a request arrives, :meth:`RequestRecord.leased`
when it has a sidecar and :meth:`RequestRecord.finish` when it is done; the pool calls
:meth:`Observer.sidecar_state` on each sidecar transition. Everything else (gauges, host and GPU
memory) is read when asked. Other parts of the daemon publish their own events (a configuration
reload, say) with :meth:`Observer.publish`, and feed the memory gauges with
:meth:`Observer.add_memory_source` / :meth:`Observer.set_slot_cache_source`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llamasc.observe.events import EventBus
from llamasc.observe.history import History
from llamasc.observe.metrics import Metrics, Snapshot
from llamasc.observe.system import GpuReader, host_memory, process_rss

if TYPE_CHECKING:
    from starlette.types import Message, Scope, Send

    from llamasc.pool.sidecar import Sidecar

log = logging.getLogger(__name__)

# Stop reasons of the pool that are evictions, under their metric names. Stops a user asked
# for and the daemon's shutdown are not evictions. "lru": the least recently used idle
# sidecar made room for a count of sidecars; "memory": it made room on a device; "group": a
# member of a conflicting group; "drain": a busy one drained for a starving waiter or a
# group; "ttl"; "reload": its model's configuration changed; "health".
_EVICTION_NAMES = {"evict": "lru", "unhealthy": "health", "retired": "reload"}
_NOT_EVICTIONS = frozenset({"requested", "shutdown", ""})

MemorySource = Callable[[], Iterable[tuple[str, str, float]]]  # (sidecar, device, bytes)


class RequestRecord:
    """One proxied request as the observer sees it (lives for that request only)."""

    __slots__ = (
        "_obs",
        "_send",
        "client",
        "err_body",
        "flags",
        "lease",
        "model",
        "route",
        "status",
        "stream",
        "t0",
        "t_first",
        "t_lease",
        "wall0",
    )

    def __init__(
        self, obs: Observer, scope: Scope, model: str, flags: Sequence[str], send: Send
    ) -> None:
        self._obs = obs
        self._send = send
        self.t0 = time.perf_counter()
        self.wall0 = time.time()
        self.model = model
        self.flags = flags
        self.route: str = scope["path"]
        client = scope.get("client")
        self.client = client[0] if client else ""
        self.status = 0
        self.stream = False
        self.t_first = 0.0
        self.t_lease = 0.0
        self.lease: Any = None
        self.err_body = b""

    async def send(self, message: Message) -> None:
        """The ASGI ``send`` of this request, noting status and first byte on the way."""
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self.status == 200:
                for name, value in message.get("headers", ()):
                    if name == b"content-type":
                        self.stream = value.startswith(b"text/event-stream")
                        break
        elif not self.t_first and message.get("body"):
            self.t_first = time.perf_counter()
            if self.status >= 400:
                self.err_body = message["body"][:4096]
        await self._send(message)

    def leased(self, lease: Any) -> None:
        """The pool granted a sidecar."""
        self.t_lease = time.perf_counter()
        self.lease = lease
        obs = self._obs
        obs.waiting[self.model] -= 1
        obs.in_flight[self.model] += 1
        if obs.bus.active:
            obs.publish_queue()

    def finish(self, client_gone: bool) -> None:
        """The request is over (answered, failed or abandoned by its client)."""
        try:
            self._obs.finished(self, client_gone)
        except Exception:  # observing must never fail a request
            log.exception("recording a request failed")


class Observer:
    """Metrics, events and history of one daemon."""

    def __init__(
        self,
        *,
        history: History | None = None,
        sidecars: Callable[[], Sequence[Any]] | None = None,
        event_buffer: int = 1000,
    ) -> None:
        self.bus = EventBus(event_buffer)
        self.metrics = Metrics(self._snapshot)
        self.history = history
        self.waiting: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self._sidecars = sidecars or (lambda: [])
        self._memory_sources: list[MemorySource] = []
        self._slot_cache: Callable[[], Mapping[str, float]] | None = None
        self._budget: Callable[[], Mapping[str, float]] | None = None
        self._gpu = GpuReader()
        self._crashed: set[str] = set()  # keys whose last child exited unexpectedly
        self._render_lock = threading.Lock()
        self._pending: Snapshot | None = None

    # ------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self.history is not None:
            self.history.start()

    def close(self) -> None:
        if self.history is not None:
            self.history.close()

    # ------------------------------------------------------------------- requests

    def begin(self, scope: Scope, model: str, flags: Sequence[str], send: Send) -> RequestRecord:
        """A request for ``model`` arrived; use the record's ``send`` from now on."""
        rec = RequestRecord(self, scope, model, flags, send)
        self.waiting[model] += 1
        if self.bus.active:
            self.bus.publish("request_started", model=model, route=rec.route, client=rec.client)
            self.publish_queue()
        return rec

    def finished(self, rec: RequestRecord, client_gone: bool) -> None:
        now = time.perf_counter()
        model = rec.model
        lease = rec.lease
        if lease is None:
            self.waiting[model] -= 1
            if self.waiting[model] <= 0:
                del self.waiting[model]
        else:
            self.in_flight[model] -= 1
            if self.in_flight[model] <= 0:
                del self.in_flight[model]
        status = 499 if client_gone and rec.status in (0, 200) else (rec.status or 500)
        duration = now - rec.t0
        sidecar = lease.key[:8] if lease is not None else ""
        timings: Mapping[str, Any] | None = getattr(lease, "timings", None)
        wait = (rec.t_lease - rec.t0) if lease is not None else None
        load_wait = queue_wait = None
        if wait is not None:
            load_wait = 0.0
            leased = getattr(lease, "sidecar", None)
            ready_at = getattr(leased, "ready_at", None)
            if ready_at is not None and ready_at > rec.wall0:
                started = max(float(getattr(leased, "started", rec.wall0)), rec.wall0)
                load_wait = min(wait, max(0.0, ready_at - started))
            queue_wait = max(0.0, wait - load_wait)
        ttft = None
        if rec.stream and rec.t_first:
            ttft = rec.t_first - rec.t0
        elif wait is not None and timings and isinstance(timings.get("prompt_ms"), int | float):
            ttft = wait + timings["prompt_ms"] / 1000.0
        m = self.metrics
        m.count_request(model, rec.route, status, duration)
        m.observe_waits(model, ttft, queue_wait)
        prompt_n = completion_n = tps = None
        if timings:
            m.timings(model, sidecar, timings)
            prompt_n = timings.get("prompt_n")
            completion_n = timings.get("predicted_n")
            tps = timings.get("predicted_per_second")
        if self.history is not None:
            self.history.add(
                (
                    rec.wall0, rec.client, model, sidecar, tuple(rec.flags), rec.route, status,
                    queue_wait, load_wait, ttft, duration, prompt_n, completion_n, tps,
                    rec.err_body or ("client_closed" if status == 499 else None),
                )
            )  # fmt: skip
        if self.bus.active:
            self.bus.publish(
                "request_finished",
                started=rec.wall0,
                model=model,
                sidecar=sidecar,
                route=rec.route,
                status=status,
                duration=duration,
                queue_wait=queue_wait,
                load_wait=load_wait,
                ttft=ttft,
                prompt_tokens=prompt_n,
                completion_tokens=completion_n,
                tokens_per_second=tps,
            )
            self.publish_queue()

    def publish_queue(self) -> None:
        self.bus.publish(
            "queue",
            waiting={k: v for k, v in self.waiting.items() if v > 0},
            in_flight={k: v for k, v in self.in_flight.items() if v > 0},
        )

    # ---------------------------------------------------------------------- events

    def publish(self, type: str, **data: Any) -> None:
        """Publish an event on ``/api/events`` (e.g. ``publish("config_reloaded", ...)``)."""
        self.bus.publish(type, **data)

    # -------------------------------------------------------------------- sidecars

    def sidecar_state(
        self, sidecar: Sidecar, state: str, error: BaseException | None = None
    ) -> None:
        """The pool's hook: ``sidecar`` is now starting, ready, stopping, exited or failed."""
        try:
            self._sidecar_state(sidecar, state, error)
        except Exception:
            log.exception("recording a sidecar change failed")

    def _sidecar_state(self, sidecar: Sidecar, state: str, error: BaseException | None) -> None:
        m = self.metrics
        model, key = sidecar.model_id, sidecar.key
        data: dict[str, Any] = {
            "hash": key,
            "sidecar": key[:8],
            "model": model,
            "flags": list(sidecar.flags),
            "port": sidecar.port,
            "state": state,
        }
        if state == "ready":
            reason = "restart" if key in self._crashed else "request"
            if key in self._crashed:
                m.restarts.labels(model).inc()
                self._crashed.discard(key)
            m.loads.labels(model, reason).inc()
            if sidecar.ready_at is not None:
                seconds = sidecar.ready_at - sidecar.started
                m.load_seconds.labels(model).observe(seconds)
                data["load_seconds"] = seconds
            data["pid"] = sidecar.handle.pid if sidecar.handle is not None else None
        elif state == "stopping":
            reason = sidecar.stop_reason
            data["reason"] = _EVICTION_NAMES.get(reason, reason)
            if reason not in _NOT_EVICTIONS:
                m.evictions.labels(model, _EVICTION_NAMES.get(reason, reason)).inc()
        elif state in ("exited", "failed"):
            code = sidecar.handle.returncode if sidecar.handle is not None else None
            data["exit_code"] = code
            if state == "failed":
                m.load_failures.labels(model).inc()
                data["reason"] = "start_failed"
                data["error"] = str(error) if error is not None else None
            elif sidecar.stopping:
                data["reason"] = _EVICTION_NAMES.get(sidecar.stop_reason, sidecar.stop_reason)
            else:
                data["reason"] = "crashed"
                self._crashed.add(key)
            data["state"] = "exited"
            m.forget_sidecar(model, key[:8])
        self.bus.publish("sidecar", **data)

    # --------------------------------------------------------------------- gauges

    def add_memory_source(self, source: MemorySource) -> None:
        """Another source of ``llamasc_sidecar_memory_bytes`` rows ``(sidecar, device, bytes)``
        of kind ``projected`` (the scheduler's estimates), read at each scrape."""
        self._memory_sources.append(source)

    def set_slot_cache_source(self, source: Callable[[], Mapping[str, float]]) -> None:
        """Where ``llamasc_slot_cache_bytes`` (sidecar -> bytes) is read from."""
        self._slot_cache = source

    def loop_snapshot(self) -> Snapshot:
        """What the gauges need from the pool, read on the event loop's thread."""
        infos = list(self._sidecars())
        by_state: Counter[str] = Counter(str(getattr(i.state, "value", i.state)) for i in infos)
        projected: dict[tuple[str, str, str], float] = {}
        for source in self._memory_sources:
            try:
                for sidecar, device, value in source():
                    projected[(sidecar[:8], device, "projected")] = float(value)
            except Exception:
                log.exception("a memory source for /metrics failed")
        slot: Mapping[str, float] = {}
        if self._slot_cache is not None:
            try:
                slot = {k[:8]: float(v) for k, v in self._slot_cache().items()}
            except Exception:
                log.exception("the slot cache source for /metrics failed")
        return Snapshot(
            sidecars_by_state=by_state,
            waiting={k: v for k, v in self.waiting.items() if v > 0},
            in_flight={k: v for k, v in self.in_flight.items() if v > 0},
            sidecar_memory=projected,
            slot_cache=slot,
            pids={i.pid: i.hash[:8] for i in infos if i.pid},
        )

    def _enrich(self, snap: Snapshot) -> Snapshot:
        """Add the readings that block (psutil, nvidia-smi): call it in a worker thread."""
        pids = snap.pids
        memory = dict(snap.sidecar_memory)
        for pid, rss in process_rss(pids).items():
            memory[(pids[pid], "host", "actual")] = rss
        try:
            snap.host_memory = host_memory()
        except Exception:
            log.debug("cannot read host memory", exc_info=True)
        gpu = self._gpu.read()
        if gpu is not None:
            snap.gpu_memory = gpu.memory
            snap.gpu_utilization = gpu.utilization
            for pid, devices in gpu.by_pid.items():
                if pid in pids:
                    for device, value in devices.items():
                        memory[(pids[pid], device, "actual")] = value
        snap.sidecar_memory = memory
        return snap

    def render(self, snap: Snapshot) -> bytes:
        """The Prometheus text for ``snap`` plus host and GPU readings (blocking: a thread)."""
        snap = self._enrich(snap)
        with self._render_lock:
            self._pending = snap
            try:
                return self.metrics.render()
            finally:
                self._pending = None

    def set_budget_source(self, source: Callable[[], Mapping[str, float]]) -> None:
        """Where the memory budget per device (device -> bytes) is read from (the scheduler)."""
        self._budget = source

    def memory_view(self, snap: Snapshot) -> dict[str, Any]:
        """Memory per device and per sidecar, for the dashboard (blocking: a thread)."""
        snap = self._enrich(snap)
        budget: Mapping[str, float] = {}
        if self._budget is not None:
            try:
                budget = self._budget()
            except Exception:
                log.exception("the memory budget source failed")
        devices: dict[str, dict[str, float]] = {}
        if snap.host_memory:
            devices["host"] = dict(snap.host_memory)
        for (device, kind), value in snap.gpu_memory.items():
            devices.setdefault(device, {})[kind] = value
        for device, value in budget.items():
            devices.setdefault(device, {})["budget"] = float(value)
        sidecars: dict[str, dict[str, dict[str, float]]] = {}
        for (sidecar, device, kind), value in snap.sidecar_memory.items():
            sidecars.setdefault(sidecar, {}).setdefault(device, {})[kind] = value
        return {"devices": devices, "sidecars": sidecars}

    def _snapshot(self) -> Snapshot:
        return self._pending if self._pending is not None else self.loop_snapshot()


__all__ = ["MemorySource", "Observer", "RequestRecord"]
