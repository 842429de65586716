"""A HumanEval verdict the program cannot forge: the tests run in a harness process apart from
the program, so every way of faking a pass of a wrong ``add`` ends as "failed", while the
canonical solutions still pass."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from llamasc.eval.data import Item, load_items
from llamasc.eval.humaneval import execute
from llamasc.eval.sandbox import SandboxLimits, run_check

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the full sandbox is Linux's")

DATA = Path(__file__).parent / "data"
LIMITS = SandboxLimits(timeout_s=20.0, cpu_seconds=5, memory_bytes=512 << 20)


@pytest.fixture(scope="module")
def add_item() -> Item:
    items = {
        i.row["entry_point"]: i for i in load_items("humaneval", DATA / "humaneval_small.jsonl")
    }
    return items["add"]


WRONG = "def add(x: int, y: int):\n    return x - y\n"

HOSTILE = {
    # writes every line a verdict channel could want to every descriptor it might have
    "forged_report": WRONG
    + "import json, os\n"
    + "lines = [b'ok\\n', b'{\"ready\": true}\\n', b'{\"ok\": 5}\\n',\n"
    + "         json.dumps({'verdict': 'passed', 'detail': ''}).encode() + b'\\n']\n"
    + "for fd in range(3, 256):\n"
    + "    for line in lines:\n"
    + "        try:\n"
    + "            os.write(fd, line)\n"
    + "        except OSError:\n"
    + "            pass\n"
    + "os._exit(0)\n",
    "os_exit_before_the_checks": WRONG + "import os\nos._exit(0)\n",
    # replaces check() with a no-op right before the line that calls it
    "monkeypatched_check": WRONG
    + "import builtins, sys\n"
    + "def _noop(candidate):\n"
    + "    return None\n"
    + "builtins.check = _noop\n"
    + "def _tracer(frame, event, arg):\n"
    + "    g = frame.f_globals\n"
    + "    if callable(g.get('check')) and g['check'] is not _noop:\n"
    + "        g['check'] = _noop\n"
    + "    return _tracer\n"
    + "sys.settrace(_tracer)\n"
    + "sys._getframe().f_trace = _tracer\n",
    "sys_exit_inside_the_function": "def add(x: int, y: int):\n"
    + "    import sys\n"
    + "    sys.exit(0)\n",
    # returns something equal to everything
    "rigged_eq": "class _Any(int):\n"
    + "    def __eq__(self, other):\n"
    + "        return True\n"
    + "    __hash__ = int.__hash__\n"
    + "def add(x: int, y: int):\n"
    + "    return _Any(0)\n",
    # removes or empties every test file it can reach, then leaves the rest of the program
    # (the test, in a one-file program) inside an unterminated string
    "deletes_the_test": WRONG
    + "import glob, os, shutil\n"
    + "for path in glob.glob('../*') + glob.glob('/tmp/llamasc-sbx-*/*'):\n"
    + "    for act in (os.remove, shutil.rmtree, lambda p: open(p, 'w').close()):\n"
    + "        try:\n"
    + "            act(path)\n"
    + "        except OSError:\n"
    + "            pass\n"
    + "def check(candidate):\n"
    + "    pass\n",
    "swallows_the_test_in_a_string": WRONG + "_rest = '''\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_wrong_solution_cannot_forge_a_pass(name: str, add_item: Item) -> None:
    result = asyncio.run(execute(add_item, HOSTILE[name], LIMITS))
    assert result.status == "failed", (name, result.detail, result.output_tail)
    assert not result.passed


def test_the_same_solution_written_correctly_passes(add_item: Item) -> None:
    result = asyncio.run(execute(add_item, "def add(x: int, y: int):\n    return x + y\n", LIMITS))
    assert result.status == "passed", (result.detail, result.output_tail)
    assert "worker-landlock-nested" in result.layers or "landlock" not in str(result.layers)


def test_the_failure_says_which_assertion_failed(add_item: Item) -> None:
    result = asyncio.run(execute(add_item, WRONG, LIMITS))
    assert result.status == "failed"
    assert "AssertionError" in result.detail


def test_a_function_that_the_tests_never_call_is_not_a_pass() -> None:
    result = asyncio.run(
        run_check(
            "def f():\n    return 1\n", "def f():\n    '''x'''\n", "def check(c):\n    pass\n", "f"
        )
    )
    assert result.status == "failed"
    assert "never called" in result.detail


def test_the_tests_use_the_datasets_helpers_not_the_programs() -> None:
    # the tests call encode() from the prompt; the program's own encode() would make the
    # identity function pass
    prompt = "def encode(s):\n    return s[::-1]\n\ndef decode(s):\n    '''reverse encode'''\n"
    test = "def check(candidate):\n    assert candidate(encode('abc')) == 'abc'\n"
    cheat = "def encode(s):\n    return s\n\ndef decode(s):\n    return s\n"
    result = asyncio.run(run_check(cheat, prompt, test, "decode", LIMITS))
    assert result.status == "failed", result.detail
    honest = prompt + "    return s[::-1]\n"
    assert asyncio.run(run_check(honest, prompt, test, "decode", LIMITS)).status == "passed"


@pytest.mark.parametrize(
    "value",
    [
        "[1, (2, 3), {'a': {4, 5}}, frozenset({6}), b'x', 1.5, None, True, 2 ** 200, 1j]",
        "float('inf')",
        "'é' * 3",
    ],
)
def test_plain_data_crosses_the_process_boundary_unchanged(value: str) -> None:
    prompt = "def f():\n    '''x'''\n"
    test = f"def check(candidate):\n    v = candidate()\n    assert v == {value}\n"
    test += f"    assert type(v) is type({value})\n"
    result = asyncio.run(run_check(f"def f():\n    return {value}\n", prompt, test, "f", LIMITS))
    assert result.status == "passed", result.detail
