"""SlotCache against a fake llama-server slot API: what is saved, the disk bound, failures."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from llamasc.pool.slotcache import SlotCache, operator_dir, slot_file

pytestmark = pytest.mark.anyio
KEY = "ab" * 32
URL = "http://127.0.0.1:1"


class FakeSlots:
    """``GET /slots`` and ``POST /slots/{id}?action=save|restore`` as llama-server answers
    them, writing and reading files in ``where``; ``fail`` makes an action answer an error."""

    def __init__(self, where: Path, slots: list[dict[str, Any]], fail: set[str] | None = None):
        self.where = where
        self.slots = slots
        self.fail = fail or set()
        self.calls: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path == "/slots":
            if "list" in self.fail:
                return httpx.Response(501, json={"error": {"message": "no slots", "code": 501}})
            return httpx.Response(200, json=self.slots)
        action = request.url.params["action"]
        sid = int(path.rsplit("/", 1)[1])
        name = json.loads(request.content)["filename"]
        self.calls.append((action, name))
        if action in self.fail:
            message = "Unable to restore slot: invalid slot save file"
            return httpx.Response(400, json={"error": {"message": message, "code": 400}})
        file = self.where / name
        if action == "save":
            tokens = next(s["n_prompt_tokens"] for s in self.slots if s["id"] == sid)
            file.write_bytes(b"k" * tokens)
            return httpx.Response(
                200, json={"id_slot": sid, "n_saved": tokens, "n_written": tokens}
            )
        if action == "restore":
            size = file.stat().st_size
            return httpx.Response(200, json={"id_slot": sid, "n_restored": size, "n_read": size})
        raise AssertionError(action)


def _cache(tmp_path: Path, fake: FakeSlots, *, min_tokens: int = 100, size: int = 10**6):
    return SlotCache(
        tmp_path / "root",
        min_tokens=min_tokens,
        max_bytes=size,
        transport=httpx.MockTransport(fake),
    )


def _slot(sid: int, tokens: int | None) -> dict[str, Any]:
    slot: dict[str, Any] = {"id": sid, "n_ctx": 2048, "is_processing": False}
    if tokens is not None:  # llama-server reports n_prompt_tokens only once a task ran
        slot["n_prompt_tokens"] = tokens
    return slot


async def test_only_slots_with_enough_tokens_are_saved(tmp_path: Path) -> None:
    where = tmp_path / "root" / KEY
    slots = [_slot(0, 500), _slot(1, 99), _slot(2, 0), _slot(3, None)]
    fake = FakeSlots(where, slots)
    cache = _cache(tmp_path, fake)
    assert cache.launch_args(KEY, ()) == ("--slot-save-path", str(where))
    report = await cache.save(URL, KEY, ())
    assert (report.slots, report.tokens, report.skipped, report.failed) == (1, 500, 3, [])
    assert fake.calls == [("save", slot_file(KEY, 0))]
    assert cache.saved(KEY, ()) == {0: where / slot_file(KEY, 0)}
    assert cache.sizes() == {KEY: 500}


async def test_restore_loads_every_saved_slot_of_the_key_and_nothing_of_others(
    tmp_path: Path,
) -> None:
    where = tmp_path / "root" / KEY
    fake = FakeSlots(where, [_slot(0, 300), _slot(1, 200)])
    cache = _cache(tmp_path, fake)
    cache.directory(KEY, ())
    await cache.save(URL, KEY, ())
    other = "cd" * 32
    cache.directory(other, ())
    (tmp_path / "root" / other / slot_file(other, 0)).write_bytes(b"x")
    fake.calls.clear()
    report = await cache.restore(URL, KEY, ())
    assert (report.slots, report.bytes, report.failed) == (2, 500, [])
    assert fake.calls == [("restore", slot_file(KEY, 0)), ("restore", slot_file(KEY, 1))]


async def test_a_new_key_restores_nothing_and_calls_nobody(tmp_path: Path) -> None:
    fake = FakeSlots(tmp_path, [])
    report = await _cache(tmp_path, fake).restore(URL, KEY, ())
    assert report.slots == 0
    assert fake.calls == []


async def test_failed_save_and_restore_are_logged_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    where = tmp_path / "root" / KEY
    fake = FakeSlots(where, [_slot(0, 300)], fail={"save"})
    cache = _cache(tmp_path, fake)
    cache.directory(KEY, ())
    with caplog.at_level(logging.WARNING, "llamasc.pool.slotcache"):
        report = await cache.save(URL, KEY, ())
        assert report.slots == 0
        assert "HTTP 400" in report.failed[0]
        (where / slot_file(KEY, 0)).write_bytes(b"garbage")
        fake.fail = {"restore"}
        report = await cache.restore(URL, KEY, ())
        assert report.slots == 0
        assert "invalid slot save file" in report.failed[0]
        fake.fail = {"list"}
        report = await cache.save(URL, KEY, ())
        assert report.slots == 0
        assert report.failed
    assert sum("slot cache" in r.getMessage() for r in caplog.records) == 3


async def test_an_unreachable_child_is_a_failure_not_an_exception(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    cache = SlotCache(tmp_path, min_tokens=0, max_bytes=10, transport=httpx.MockTransport(refuse))
    (tmp_path / KEY).mkdir()
    (tmp_path / KEY / slot_file(KEY, 0)).write_bytes(b"x")
    assert (await cache.save(URL, KEY, ())).failed
    assert (await cache.restore(URL, KEY, ())).failed


def test_the_disk_bound_deletes_least_recently_used_files_first(tmp_path: Path) -> None:
    cache = SlotCache(tmp_path, min_tokens=0, max_bytes=250)
    paths = []
    for i, key in enumerate(["a" * 64, "b" * 64, "c" * 64]):
        d = cache.directory(key, ())
        path = d / slot_file(key, 0)
        path.write_bytes(b"x" * 100)
        os.utime(path, (1000 + i, 1000 + i))
        paths.append(path)
    os.utime(paths[0], (2000, 2000))  # a was restored last: b is now the oldest
    assert cache.enforce_size() == [paths[1]]
    assert [p.exists() for p in paths] == [True, False, True]
    assert SlotCache(tmp_path, min_tokens=0, max_bytes=0).enforce_size() == [paths[2], paths[0]]


async def test_an_operators_slot_save_path_is_kept_and_shared_by_name(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    flags = ("-c", "2048", "--slot-save-path", str(theirs))
    assert operator_dir(flags) == theirs
    fake = FakeSlots(theirs, [_slot(0, 300)])
    cache = _cache(tmp_path, fake)
    assert cache.launch_args(KEY, flags) == ()  # their flag stays; no second one
    (theirs / "their-own.bin").write_bytes(b"o" * 10**7)  # not ours: never counted or deleted
    await cache.save(URL, KEY, flags)
    assert cache.saved(KEY, flags) == {0: theirs / slot_file(KEY, 0)}
    assert cache.sizes() == {KEY: 300}
    assert cache.enforce_size() == []
    assert (theirs / "their-own.bin").exists()


async def test_no_slots_means_no_cache(tmp_path: Path) -> None:
    fake = FakeSlots(tmp_path, [_slot(0, 300)])
    cache = _cache(tmp_path, fake)
    assert cache.launch_args(KEY, ("--no-slots",)) == ()
    assert (await cache.save(URL, KEY, ("--no-slots",))).slots == 0
    assert fake.calls == []
