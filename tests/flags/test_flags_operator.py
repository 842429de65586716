"""The operator is trusted: every flag but the pool-owned few, warnings for what stops working."""

from __future__ import annotations

import pytest

from llamasc.flags import FlagPolicy, validate_flags

OPERATOR = FlagPolicy.operator()


@pytest.mark.parametrize(
    "flags",
    [
        "--embedding --pooling mean",
        "--reranking",
        "--slots",
        "--no-slots",
        "--metrics --props",
        "--sleep-idle-seconds 60",
        "--tags a,b",
        "--verbose",
        "--log-disable",
        "--cors-origins http://a.example,http://b.example",
        "--timeout 30 --sse-ping-interval 5",
        "--rpc 10.0.0.2:50052",
        "--ui-mcp-proxy",
        "--offline",
        "--path /srv/ui",
    ],
)
def test_operator_may_set_it(flags: str) -> None:
    v = validate_flags(flags, OPERATOR)
    assert v.ok, v.problems


@pytest.mark.parametrize(
    "flags",
    [
        "--port 9000",
        "--host 0.0.0.0",
        "-m /x.gguf",
        "--alias x",
        "--api-key k",
        "--ssl-key-file /k",
        "--api-prefix /x",
        "--models-dir /m",
        "--fim-qwen-1.5b-default",
        "--version",
        "--draft 3",
    ],
)
def test_operator_may_not_set_what_the_pool_owns(flags: str) -> None:
    v = validate_flags(flags, OPERATOR)
    assert not v.ok


def test_warnings_say_what_stops_working() -> None:
    v = validate_flags("--no-slots --log-disable -c 512", OPERATOR)
    assert v.ok
    assert len(v.warnings) == 2
    assert v.warnings[0].startswith("--no-slots: ")
    assert "slot save/restore" in v.warnings[0]
    assert v.warnings[1].startswith("--log-disable: ")
    assert validate_flags("--slots -c 512", OPERATOR).warnings == []


@pytest.mark.parametrize("flags", ["--embedding", "--no-slots", "--metrics", "--tags a", "-v"])
def test_clients_stay_as_strict_as_before(flags: str) -> None:
    assert not validate_flags(flags, FlagPolicy.untrusted()).ok
