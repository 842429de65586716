"""The metrics registry: names, labels and values, read back with prometheus_client's parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from llamasc.observe.metrics import Metrics, Snapshot


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_timings_feed_tokens_speeds_and_acceptance() -> None:
    m = Metrics(Snapshot)
    m.timings(
        "m1",
        "abcd1234",
        {
            "prompt_n": 7,
            "predicted_n": 5,
            "prompt_per_second": 700.0,
            "predicted_per_second": 50.0,
            "draft_n": 8,
            "draft_n_accepted": 6,
        },
    )
    m.timings("m1", "abcd1234", {"prompt_n": 3, "predicted_n": 2})
    got = samples(m.render())
    labels = (("model", "m1"), ("sidecar", "abcd1234"))
    assert got[("llamasc_prompt_tokens_total", labels)] == 10
    assert got[("llamasc_completion_tokens_total", labels)] == 7
    assert got[("llamasc_prompt_tokens_per_second", labels)] == 700.0
    assert got[("llamasc_decode_tokens_per_second", labels)] == 50.0
    assert got[("llamasc_speculative_acceptance_ratio", labels)] == 0.75
    m.forget_sidecar("m1", "abcd1234")
    got = samples(m.render())
    assert ("llamasc_decode_tokens_per_second", labels) not in got
    assert got[("llamasc_prompt_tokens_total", labels)] == 10  # counters stay


def test_gauges_of_the_present_and_absent_gpu() -> None:
    snap = Snapshot(
        sidecars_by_state={"ready": 2},
        waiting={"m1": 3},
        in_flight={"m2": 1},
        sidecar_memory={("abcd1234", "host", "actual"): 1000.0},
        host_memory={"total": 8.0, "used": 3.0, "free": 5.0},
    )
    got = samples(Metrics(lambda: snap).render())
    assert got[("llamasc_sidecars", (("state", "ready"),))] == 2
    assert got[("llamasc_sidecars", (("state", "starting"),))] == 0
    assert got[("llamasc_waiting_requests", (("model", "m1"),))] == 3
    assert got[("llamasc_in_flight_requests", (("model", "m2"),))] == 1
    key = (("device", "host"), ("kind", "actual"), ("sidecar", "abcd1234"))
    assert got[("llamasc_sidecar_memory_bytes", key)] == 1000.0
    assert got[("llamasc_host_memory_bytes", (("kind", "free"),))] == 5.0
    names = {name for name, _ in got}
    assert not any(n.startswith("llamasc_gpu_") for n in names)  # unreadable: absent, not 0
    assert "llamasc_slot_cache_bytes" not in names


def test_request_counter_and_histogram() -> None:
    m = Metrics(Snapshot)
    for _ in range(3):
        m.count_request("m1", "/v1/chat/completions", 200, 0.02)
    m.count_request("m1", "/v1/chat/completions", 503, 1.5)
    got = samples(m.render())
    ok = (("model", "m1"), ("route", "/v1/chat/completions"), ("status", "200"))
    assert got[("llamasc_requests_total", ok)] == 3
    route = (("model", "m1"), ("route", "/v1/chat/completions"))
    assert got[("llamasc_request_seconds_count", route)] == 4
    assert abs(got[("llamasc_request_seconds_sum", route)] - 1.56) < 1e-9


def test_the_grafana_dashboard_uses_only_names_we_export() -> None:
    import json
    import re
    from pathlib import Path

    snap = Snapshot(
        sidecars_by_state={"ready": 1},
        waiting={"m": 1},
        in_flight={"m": 1},
        sidecar_memory={("s", "host", "actual"): 1.0},
        slot_cache={"s": 1.0},
        host_memory={"total": 1.0},
        gpu_memory={("cuda0", "used"): 1.0},
        gpu_utilization={"cuda0": 0.5},
    )
    m = Metrics(lambda: snap)
    timings = {"prompt_n": 1, "predicted_n": 2, "prompt_per_second": 1.0}
    m.timings(
        "m", "s", {**timings, "predicted_per_second": 1.0, "draft_n": 2, "draft_n_accepted": 1}
    )
    m.count_request("m", "/r", 200, 0.1)
    m.ttft.labels("m").observe(0.1)
    m.queue_wait.labels("m").observe(0.1)
    m.loads.labels("m", "request").inc()
    m.load_seconds.labels("m").observe(1)
    m.evictions.labels("m", "lru").inc()
    m.restarts.labels("m").inc()
    exported = {n for n, _ in samples(m.render())}
    root = Path(__file__).resolve().parents[2]
    dash = json.loads((root / "docs" / "grafana-llamasc.json").read_text())
    used = {
        name
        for panel in dash["panels"]
        for target in panel["targets"]
        for name in re.findall(r"llamasc_[a-z_]+", target["expr"])
    }
    assert used, "the dashboard has no queries"
    assert used <= exported, used - exported
