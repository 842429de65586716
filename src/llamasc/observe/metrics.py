"""llamasc's own Prometheus metrics (``GET /metrics``), made with ``prometheus_client``.

Labels are bounded: ``model`` (configured ids), ``sidecar`` (the 8-hex hash of model + canonical
flags), ``route``, ``status``, ``reason``, ``state``, ``device``, ``kind``. Raw flags never
become a label. Counters and histograms are updated as things happen; gauges that describe the
present (sidecars by state, waiting, in flight, memory, host and GPU) are read at scrape time
by :class:`StateCollector` from a callback, so the request path never pays for them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
_LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)


@dataclass
class Snapshot:
    """The present, as the gauges show it (filled by the observer at scrape time)."""

    sidecars_by_state: Mapping[str, int] = field(default_factory=dict)
    waiting: Mapping[str, int] = field(default_factory=dict)
    in_flight: Mapping[str, int] = field(default_factory=dict)
    # (sidecar, device, kind) -> bytes; kind is "projected" or "actual"
    sidecar_memory: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    slot_cache: Mapping[str, float] = field(default_factory=dict)  # sidecar -> bytes
    host_memory: Mapping[str, float] = field(default_factory=dict)  # kind -> bytes
    gpu_memory: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (device, kind)
    gpu_utilization: Mapping[str, float] = field(default_factory=dict)  # device -> 0..1
    pids: Mapping[int, str] = field(default_factory=dict)  # sidecar pid -> 8-hex hash


# every state a sidecar can be in, so a state with no sidecar shows 0, not nothing
SIDECAR_STATES = ("starting", "ready", "stopping")


class StateCollector(Collector):
    """Gauges of the present, read from ``snapshot()`` on each scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked collector: its families depend on what can be read

    def collect(self) -> Iterator[Metric]:
        try:
            snap = self._snapshot()
        except Exception:  # a scrape must still answer with the rest
            log.exception("reading the state for /metrics failed")
            return
        g = GaugeMetricFamily("llamasc_sidecars", "Sidecars by state.", labels=["state"])
        for state in sorted(set(SIDECAR_STATES) | set(snap.sidecars_by_state)):
            g.add_metric([state], snap.sidecars_by_state.get(state, 0))
        yield g
        yield _per(
            "llamasc_waiting_requests", "Requests waiting for a sidecar.", "model", snap.waiting
        )
        yield _per(
            "llamasc_in_flight_requests", "Requests being answered.", "model", snap.in_flight
        )
        mem = GaugeMetricFamily(
            "llamasc_sidecar_memory_bytes",
            "Memory a sidecar holds (actual) or is expected to hold (projected), per device.",
            labels=["sidecar", "device", "kind"],
        )
        for (sidecar, device, kind), value in sorted(snap.sidecar_memory.items()):
            mem.add_metric([sidecar, device, kind], value)
        yield mem
        if snap.slot_cache:
            yield _per(
                "llamasc_slot_cache_bytes",
                "Bytes of saved prompt/slot cache.",
                "sidecar",
                snap.slot_cache,
            )
        if snap.host_memory:
            yield _per(
                "llamasc_host_memory_bytes", "Host memory by kind.", "kind", snap.host_memory
            )
        if snap.gpu_memory:
            gm = GaugeMetricFamily(
                "llamasc_gpu_memory_bytes", "GPU memory by device.", labels=["device", "kind"]
            )
            for (device, kind), value in sorted(snap.gpu_memory.items()):
                gm.add_metric([device, kind], value)
            yield gm
        if snap.gpu_utilization:
            yield _per(
                "llamasc_gpu_utilization_ratio",
                "GPU utilisation, 0 to 1.",
                "device",
                snap.gpu_utilization,
            )


def _per(name: str, doc: str, label: str, values: Mapping[str, float]) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        g.add_metric([key], value)
    return g


class Metrics:
    """The registry and every event-driven metric (one instance per daemon)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        r = self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "llamasc_requests", "Proxied requests.", ["model", "route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "llamasc_request_seconds",
            "Request duration, arrival to last byte.",
            ["model", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "llamasc_time_to_first_token_seconds",
            "Arrival to first token (streams: first chunk; others: wait + prompt time).",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "llamasc_queue_wait_seconds",
            "Time a request waited for room in the pool (not counting a load).",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "llamasc_prompt_tokens", "Prompt tokens processed.", ["model", "sidecar"], registry=r
        )
        self.completion_tokens = Counter(
            "llamasc_completion_tokens",
            "Tokens generated.",
            ["model", "sidecar"],
            registry=r,
        )
        self.prompt_tps = Gauge(
            "llamasc_prompt_tokens_per_second",
            "Prompt processing speed of the last answer (llama-server's timings).",
            ["model", "sidecar"],
            registry=r,
        )
        self.decode_tps = Gauge(
            "llamasc_decode_tokens_per_second",
            "Generation speed of the last answer (llama-server's timings).",
            ["model", "sidecar"],
            registry=r,
        )
        self.acceptance = Gauge(
            "llamasc_speculative_acceptance_ratio",
            "Accepted / drafted tokens of the last answer with speculative decoding.",
            ["model", "sidecar"],
            registry=r,
        )
        self.loads = Counter(
            "llamasc_model_loads", "Sidecars that became ready.", ["model", "reason"], registry=r
        )
        self.load_failures = Counter(
            "llamasc_model_load_failures", "Sidecars that failed to start.", ["model"], registry=r
        )
        self.load_seconds = Histogram(
            "llamasc_model_load_seconds",
            "Start to ready.",
            ["model"],
            buckets=_LOAD_BUCKETS,
            registry=r,
        )
        self.evictions = Counter(
            "llamasc_evictions",
            "Sidecars stopped by the daemon, not by a user.",
            ["model", "reason"],
            registry=r,
        )
        self.restarts = Counter(
            "llamasc_sidecar_restarts",
            "Sidecars started again after an unexpected exit.",
            ["model"],
            registry=r,
        )
        r.register(StateCollector(snapshot))
        self._req_children: dict[tuple[str, str, str], Any] = {}
        self._dur_children: dict[tuple[str, str], Any] = {}
        self._children: dict[tuple[Any, ...], Any] = {}

    def count_request(self, model: str, route: str, status: int, seconds: float) -> None:
        """One finished request (label children cached: this runs per request)."""
        key = (model, route, str(status))
        child = self._req_children.get(key)
        if child is None:
            child = self._req_children[key] = self.requests.labels(*key)
        child.inc()
        dkey = (model, route)
        dur = self._dur_children.get(dkey)
        if dur is None:
            dur = self._dur_children[dkey] = self.request_seconds.labels(*dkey)
        dur.observe(seconds)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: it takes a lock and builds a key each call."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_waits(self, model: str, ttft: float | None, queue_wait: float | None) -> None:
        if ttft is not None:
            self._child(self.ttft, model).observe(ttft)
        if queue_wait is not None:
            self._child(self.queue_wait, model).observe(queue_wait)

    def timings(self, model: str, sidecar: str, timings: Mapping[str, Any]) -> None:
        """llama-server's ``timings`` of one answer."""
        prompt_n = timings.get("prompt_n")
        predicted_n = timings.get("predicted_n")
        if isinstance(prompt_n, int | float) and prompt_n > 0:
            self._child(self.prompt_tokens, model, sidecar).inc(prompt_n)
        if isinstance(predicted_n, int | float) and predicted_n > 0:
            self._child(self.completion_tokens, model, sidecar).inc(predicted_n)
        pps = timings.get("prompt_per_second")
        if isinstance(pps, int | float) and pps > 0:
            self._child(self.prompt_tps, model, sidecar).set(pps)
        dps = timings.get("predicted_per_second")
        if isinstance(dps, int | float) and dps > 0:
            self._child(self.decode_tps, model, sidecar).set(dps)
        drafted = timings.get("draft_n")
        accepted = timings.get("draft_n_accepted")
        if isinstance(drafted, int | float) and drafted > 0 and isinstance(accepted, int | float):
            self._child(self.acceptance, model, sidecar).set(accepted / drafted)

    def forget_sidecar(self, model: str, sidecar: str) -> None:
        """A sidecar is gone: its last-answer gauges would only mislead."""
        for gauge in (self.prompt_tps, self.decode_tps, self.acceptance):
            with contextlib.suppress(KeyError):
                gauge.remove(model, sidecar)

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "SIDECAR_STATES", "Metrics", "Snapshot", "StateCollector"]
