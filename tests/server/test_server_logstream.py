"""The daemon log ring behind ``GET /logs/stream``: bounded, sequenced, and without the
sidecars' output (read from their own rings instead)."""

from __future__ import annotations

import logging

from llamasc.server.logstream import LogRing, new_lines


def _record(name: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, None, None)


def test_the_ring_keeps_the_last_lines_with_increasing_numbers() -> None:
    ring = LogRing(size=3)
    for i in range(5):
        ring.emit(_record("llamasc.pool", f"line {i}"))
    got = ring.since(0)
    assert [ln.rsplit(" ", 2)[-2:] for _, ln in got] == [
        ["line", "2"],
        ["line", "3"],
        ["line", "4"],
    ]
    assert [s for s, _ in got] == [3, 4, 5]
    assert ring.since(4) == got[-1:]
    assert ring.last_seq() == 5
    ring.emit(_record("llamasc.process._output", "[sidecar:x] a llama-server line"))
    assert ring.last_seq() == 5  # sidecar output is not the daemon's log


def test_a_multi_line_record_is_one_line_each() -> None:
    ring = LogRing()
    ring.emit(_record("llamasc.pool", "exited; last lines:\nerror one\nerror two"))
    assert [ln for _, ln in ring.since(0)][1:] == ["error one", "error two"]


def test_new_lines_of_a_ring_tail() -> None:
    assert new_lines([], ["a", "b"]) == ["a", "b"]
    assert new_lines(["a", "b"], ["a", "b", "c"]) == ["c"]
    assert new_lines(["a", "b"], ["b", "c", "d"]) == ["c", "d"]  # the ring moved on
    assert new_lines(["x", "y"], ["c", "d"]) == ["c", "d"]  # nothing in common: all new
    assert new_lines(["a", "b"], ["a", "b"]) == []
