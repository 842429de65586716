"""choose_victim: least recently used among sidecars that nobody needs right now."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamasc.pool.eviction import SidecarState, choose_victim, evictable

R, S, T = SidecarState.READY, SidecarState.STARTING, SidecarState.STOPPING


@dataclass(frozen=True)
class C:
    key: str
    state: SidecarState = R
    in_flight: int = 0
    waiters: int = 0
    last_used: float = 0.0


@pytest.mark.parametrize(
    ("sidecars", "victim"),
    [
        pytest.param([], None, id="empty pool"),
        pytest.param([C("a", last_used=2), C("b", last_used=1)], "b", id="least recently used"),
        pytest.param([C("a", last_used=1, in_flight=1), C("b", last_used=9)], "b", id="busy kept"),
        pytest.param([C("a", last_used=1, waiters=1), C("b", last_used=9)], "b", id="wanted kept"),
        pytest.param([C("a", S), C("b", last_used=9)], "b", id="starting kept"),
        pytest.param([C("a", T), C("b", last_used=9)], "b", id="stopping not chosen twice"),
        pytest.param([C("a", in_flight=2), C("b", in_flight=1)], None, id="all busy"),
        pytest.param([C("t", last_used=0), C("b", last_used=5)], "b", id="never the target"),
        pytest.param([C("b", last_used=1), C("a", last_used=1)], "a", id="tie: smallest key"),
    ],
)
def test_choose_victim(sidecars: list[C], victim: str | None) -> None:
    assert choose_victim("t", sidecars) == victim


@given(
    st.lists(
        st.builds(
            C,
            key=st.sampled_from("abcdefgh"),
            state=st.sampled_from(SidecarState),
            in_flight=st.integers(0, 3),
            waiters=st.integers(0, 2),
            last_used=st.floats(0, 100),
        ),
        unique_by=lambda c: c.key,
    )
)
def test_victim_is_idle_and_no_idle_sidecar_is_older(sidecars: list[C]) -> None:
    victim = choose_victim("a", sidecars)
    idle = [c for c in sidecars if evictable(c) and c.key != "a"]
    if victim is None:
        assert idle == []
        return
    chosen = next(c for c in sidecars if c.key == victim)
    assert evictable(chosen)
    assert all(chosen.last_used <= c.last_used for c in idle)
    # the order the pool lists its sidecars in does not matter
    assert choose_victim("a", list(reversed(sidecars))) == victim
