"""Several listen addresses in --bind / LLAMA_SIDECAR_BIND, as llama-server's --host takes them."""

from __future__ import annotations

import pytest

from llamasc.config.settings import check_bind_security, settings_from_sources, split_binds
from llamasc.errors import ConfigError


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1:8402", [("127.0.0.1", 8402)]),
        ("[::1]:8402", [("::1", 8402)]),
        ("127.0.0.1,::1:8402", [("127.0.0.1", 8402), ("::1", 8402)]),
        ("127.0.0.1, [::1]:8402", [("127.0.0.1", 8402), ("::1", 8402)]),
        ("127.0.0.1:8402,[::1]:8403", [("127.0.0.1", 8402), ("::1", 8403)]),
        ("localhost,127.0.0.2:9000", [("localhost", 9000), ("127.0.0.2", 9000)]),
        ("[::1],127.0.0.1:0", [("::1", 0), ("127.0.0.1", 0)]),
    ],
)
def test_split_binds(bind: str, expected: list[tuple[str, int]]) -> None:
    assert split_binds(bind) == expected


@pytest.mark.parametrize(
    "bind", ["127.0.0.1,", ",127.0.0.1:1", "127.0.0.1,::1", "a:b:c,1.2.3.4:x", "::1:8402"]
)
def test_bad_binds_are_one_line(bind: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_sources(env={"LLAMA_SIDECAR_BIND": bind})
    assert str(err.value).startswith("LLAMA_SIDECAR_BIND: must be HOST:PORT")
    assert "\n" not in str(err.value)


def test_every_address_counts_for_the_loopback_rule() -> None:
    check_bind_security(settings_from_sources(env={}, cli={"bind": "127.0.0.1,::1:8402"}))
    with pytest.raises(ConfigError, match="without an API key"):
        check_bind_security(settings_from_sources(env={}, cli={"bind": "127.0.0.1,0.0.0.0:8402"}))
    s = settings_from_sources(env={}, cli={"bind": "127.0.0.1,0.0.0.0:8402", "api_key": "k"})
    check_bind_security(s)
    assert s.host == "127.0.0.1"
    assert s.port == 8402
