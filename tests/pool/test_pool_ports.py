"""Port allocation on 127.0.0.1: free ports only, none handed out twice, reuse after release."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from pool_fakes import free_block

from llamasc.errors import ConfigError, SpawnError
from llamasc.pool.ports import PortAllocator, parse_port_range, port_is_free


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s
    s.close()


def test_a_port_somebody_listens_on_is_not_free(listener: socket.socket) -> None:
    assert not port_is_free(listener.getsockname()[1])


def test_ports_are_distinct_until_released_then_reused() -> None:
    lo, hi = free_block(3)
    alloc = PortAllocator((lo, hi))
    got = [alloc.allocate() for _ in range(3)]
    assert sorted(got) == [lo, lo + 1, hi]
    with pytest.raises(SpawnError, match=f"no free port in PORT_RANGE {lo}-{hi}"):
        alloc.allocate()
    alloc.release(got[1])
    assert alloc.allocate() == got[1]


def test_a_released_port_is_the_last_one_reused() -> None:
    lo, hi = free_block(3)
    alloc = PortAllocator((lo, hi))
    first = alloc.allocate()
    alloc.release(first)
    assert alloc.allocate() != first


def test_a_port_in_use_by_another_program_is_skipped() -> None:
    lo, hi = free_block(2)
    with socket.socket() as other:
        other.bind(("127.0.0.1", lo))
        other.listen()
        alloc = PortAllocator((lo, hi))
        assert alloc.allocate() == hi
        with pytest.raises(SpawnError):
            alloc.allocate()


def test_concurrent_allocations_never_share_a_port() -> None:
    lo, hi = free_block(40)
    alloc = PortAllocator((lo, hi))
    got: list[int] = []
    lock = threading.Lock()

    def grab() -> None:
        for _ in range(10):
            p = alloc.allocate()
            with lock:
                got.append(p)

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 40
    assert len(set(got)) == 40
    assert alloc.taken == frozenset(got)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8500-8599", (8500, 8599)), (" 9000 - 9001 ", (9000, 9001)), ("8500", (8500, 8500))],
)
def test_parse_port_range(text: str, expected: tuple[int, int]) -> None:
    assert parse_port_range(text) == expected


@pytest.mark.parametrize("text", ["", "a-b", "9000-8000", "0-10", "65535-65536", "1-2-3"])
def test_parse_port_range_rejects_nonsense(text: str) -> None:
    with pytest.raises(ConfigError, match="PORT_RANGE"):
        parse_port_range(text)
