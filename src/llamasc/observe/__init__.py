"""Observability: Prometheus metrics, an event bus, and a request history in SQLite.

- ``metrics``: :class:`Metrics`, llamasc's own ``prometheus_client`` registry.
- ``events``: :class:`EventBus`, bounded fan-out behind ``GET /api/events``.
- ``history``: :class:`History`, one SQLite row per request, written by a background thread.
- ``system``: host and GPU memory readings (absent where they cannot be read).
- ``observer``: :class:`Observer`, which the relay and the pool tell what happens.
"""

from llamasc.observe.events import Event, EventBus, Subscription
from llamasc.observe.history import History
from llamasc.observe.metrics import Metrics, Snapshot
from llamasc.observe.observer import Observer, RequestRecord

__all__ = [
    "Event",
    "EventBus",
    "History",
    "Metrics",
    "Observer",
    "RequestRecord",
    "Snapshot",
    "Subscription",
]
