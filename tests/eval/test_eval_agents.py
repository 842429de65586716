"""The agent prompt set: the shipped YAML, the automatic checks, the side-by-side reports."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from llamasc.client import ChatClient
from llamasc.errors import ConfigError
from llamasc.eval.agents import (
    AgentReply,
    Check,
    default_prompts_path,
    load_prompt_set,
    parse_prompt_set,
    run_agents,
    run_check,
)
from llamasc.eval.agents_report import to_html, to_markdown, write_reports

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "agent-prompts.yaml"


def test_the_shipped_prompt_set_has_14_checked_agent_prompts() -> None:
    prompt_set = load_prompt_set(CONFIG)
    assert len(prompt_set.prompts) == 14
    assert len({p.id for p in prompt_set.prompts}) == 14
    roles = " ".join(p.role for p in prompt_set.prompts)
    for role in ("coder", "reviewer", "planner", "tool caller", "summariser"):
        assert role in roles
    assert all(p.check.model_dump(exclude_defaults=True) for p in prompt_set.prompts)


def test_default_path_finds_the_checkout_copy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_prompts_path().resolve() == CONFIG


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("prompts: [{id: a, role: r}]", "user"),
        ("prompts: [{id: a, role: r, user: u, colour: red}]", "colour"),
        ("prompts: [{id: a, role: r, user: u}, {id: a, role: r, user: v}]", "unique"),
        ("prompts: [{id: a, role: r, user: u, check: {regex: '('}}]", "regex"),
        ("prompts: [", "YAML"),
    ],
)
def test_bad_prompt_sets_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_prompt_set(text, "p.yaml")
    assert problem in str(err.value) + " ".join(err.value.details)


SCHEMA = {
    "type": "object",
    "required": ["tool", "arguments"],
    "properties": {
        "tool": {"type": "string", "enum": ["get_weather"]},
        "arguments": {
            "type": "object",
            "required": ["city"],
            "properties": {"city": {"type": "string"}},
        },
    },
}


@pytest.mark.parametrize(
    ("check", "reply", "passed"),
    [
        (
            Check(json_schema=SCHEMA),
            '{"tool": "get_weather", "arguments": {"city": "Lisbon"}}',
            True,
        ),
        (
            Check(json_schema=SCHEMA),
            'Sure!\n```json\n{"tool": "get_weather", "arguments": {"city": "Lisbon"}}\n```',
            True,
        ),
        (Check(json_schema=SCHEMA), '{"tool": "get_time", "arguments": {"city": "Lisbon"}}', False),
        (Check(json_schema=SCHEMA), '{"tool": "get_weather", "arguments": {}}', False),
        (Check(json_schema=SCHEMA), '{"tool": "get_weather", "arguments": {"city": 3}}', False),
        (Check(json_schema=SCHEMA), "I would call get_weather.", False),
        (Check(python_compiles=True), "```python\ndef f(x):\n    return x\n```", True),
        (Check(python_compiles=True), "```python\ndef f(x)\n    return x\n```", False),
        (Check(required_words=["KeyError", "get"]), "A keyerror: use .get()", True),
        (Check(required_words=["KeyError"]), "It fails.", False),
        (Check(regex=r"Answer:\s*47\b"), "7*8=56, 56-9=47\nAnswer: 47", True),
        (Check(regex=r"Answer:\s*47\b"), "Answer: 470", False),
        (Check(max_words=3), "one two three", True),
        (Check(max_words=3), "one two three four", False),
        (Check(), "anything", None),
    ],
)
def test_checks(check: Check, reply: str, passed: bool | None) -> None:
    result, problems = run_check(check, reply)
    assert result is passed
    assert bool(problems) == (passed is False)


def _replies(models: list[str], output: str) -> list[AgentReply]:
    prompt_set = load_prompt_set(CONFIG)
    return [
        AgentReply(
            p.id,
            m,
            output=output,
            latency_s=0.5,
            tokens_per_s=42.0,
            passed=False,
            problems=["missing 'x'"],
        )
        for m in models
        for p in prompt_set.prompts
    ]


def test_html_report_escapes_model_output_and_is_self_contained() -> None:
    prompt_set = load_prompt_set(CONFIG)
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)> & </pre>'
    models = ["m<1>", "m2"]
    page = to_html(prompt_set, models, _replies(models, evil))
    assert "<script" not in page
    assert "<img" not in page
    assert html.escape(evil) in page
    assert "m&lt;1&gt;" in page
    assert "http://" not in page
    assert "https://" not in page
    assert page.count("<pre") == page.count("</pre>")  # the escaped </pre> closed nothing


def test_markdown_report_fences_outputs_that_contain_fences() -> None:
    prompt_set = load_prompt_set(CONFIG)
    output = "```python\nprint('hi')\n```"
    text = to_markdown(prompt_set, ["a"], _replies(["a"], output))
    assert "````text\n" + output + "\n````" in text
    assert "| **checks passed** | 0/14 |" in text


@pytest.mark.anyio
async def test_run_agents_across_two_models_against_the_fake_server(
    fake_llama_server_bin: Path, start_server, tmp_path: Path
) -> None:
    server = start_server(fake_llama_server_bin, "fake.gguf")
    prompt_set = parse_prompt_set(
        "prompts:\n"
        "  - {id: echo, role: echoer, user: 'say <b>bold</b> Lisbon', max_tokens: 8,\n"
        "     check: {required_words: [lisbon]}}\n"
        "  - {id: json, role: tool caller, user: 'not json at all', max_tokens: 8,\n"
        "     check: {json_schema: {type: object}}}\n"
    )
    async with ChatClient(server.url) as client:
        replies = await run_agents(prompt_set, ["m1", "m2"], client)
    assert [(r.prompt_id, r.model) for r in replies] == [
        ("echo", "m1"),
        ("json", "m1"),
        ("echo", "m2"),
        ("json", "m2"),
    ]
    by = {(r.prompt_id, r.model): r for r in replies}
    assert by[("echo", "m1")].passed is True  # the fake echoes the message
    assert by[("json", "m2")].passed is False
    assert all(r.latency_s is not None and r.latency_s > 0 for r in replies)
    json_path, md_path, html_path = write_reports(tmp_path, prompt_set, ["m1", "m2"], replies)
    assert len(json.loads(json_path.read_text())["replies"]) == 4
    assert "&lt;b&gt;bold&lt;/b&gt;" in html_path.read_text()
    assert "## echo (echoer)" in md_path.read_text()
