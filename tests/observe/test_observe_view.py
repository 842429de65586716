"""The client-side picture llamasc top draws, folded from events."""

from __future__ import annotations

from llamasc.observe.view import LiveView, parse_sse


def test_events_fold_into_sidecars_and_queue() -> None:
    lines = [
        "id: 1", "event: state",
        'data: {"sidecars": [{"hash": "aa11bb22cc", "model": "m1", "state": "ready"}], '
        '"waiting": {}, "in_flight": {}}',
        "",
        ": ping", "",
        "event: sidecar", 'data: {"hash": "dd33", "model": "m2", "state": "starting"}', "",
        "event: queue", 'data: {"waiting": {"m2": 2}, "in_flight": {"m1": 1}}', "",
        "event: request_finished",
        'data: {"model": "m1", "sidecar": "aa11bb22", "ttft": 0.1, "tokens_per_second": 9}',
        "",
        "event: sidecar", 'data: {"hash": "aa11bb22cc", "state": "exited"}', "",
        "event: dropped", 'data: {"count": 4}', "",
    ]  # fmt: skip
    view = LiveView()
    events = list(parse_sse(lines))
    assert [t for t, _ in events] == [
        "state", "sidecar", "queue", "request_finished", "sidecar", "dropped",
    ]  # fmt: skip
    for type_, data in events[:4]:
        view.apply(type_, data)
    assert set(view.sidecars) == {"aa11bb22cc", "dd33"}
    assert view.sidecars["dd33"]["state"] == "starting"
    assert view.waiting == {"m2": 2}
    assert view.sidecars["aa11bb22cc"]["last_tps"] == 9
    for type_, data in events[4:]:
        view.apply(type_, data)
    assert set(view.sidecars) == {"dd33"}
    assert view.dropped == 4
