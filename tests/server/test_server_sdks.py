"""The official ``openai`` and ``anthropic`` SDKs against the daemon over the real llama-server
and SmolLM2: streaming and not, tools included, and the router API with both real models.

Neither tiny model calls a tool, even when told to (llama-server answers text directly too), so
the tool tests check what the relay owes: tool definitions, tool-use turns and tool results go
through, and the SDKs parse every answer and stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fakes import ThreadDaemon, free_port_range, wait_until

from llamasc.config.settings import settings_from_sources

pytestmark = pytest.mark.real

KEY = "sdk-test-key"
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


def _daemon(tmp: Path, binary: Path, models: dict[str, Path], **cli: Any) -> ThreadDaemon:
    model_map = tmp / "models.json"
    model_map.write_text(json.dumps({k: str(v) for k, v in models.items()}))
    lo, hi = free_port_range()
    values: dict[str, Any] = {
        "llama_server_bin": str(binary),
        "model_map_file": str(model_map),
        "bind": "127.0.0.1:0",
        "port_range": f"{lo}-{hi}",
        "base_args": '["-c", "2048", "-np", "1", "-t", "2"]',
        "home": str(tmp / "home"),
        "health_timeout": "120",
        **cli,
    }
    return ThreadDaemon(settings_from_sources(env={}, cli=values))


@pytest.fixture(scope="module")
def smol_daemon(
    tmp_path_factory: pytest.TempPathFactory, llama_server_bin: Path, smollm2_path: Path
) -> Iterator[ThreadDaemon]:
    d = _daemon(tmp_path_factory.mktemp("sdk"), llama_server_bin, {"smol": smollm2_path},
                api_key=KEY)  # fmt: skip
    yield d
    d.stop()


def test_anthropic_sdk_streams_always_open(smol_daemon: ThreadDaemon) -> None:
    """llama-server leaves out ``message_start`` when its first token is half a character
    (about 1 stream in 10 of these, sampled); through llamasc every stream has it."""
    import anthropic

    client = anthropic.Anthropic(base_url=smol_daemon.url, api_key=KEY, max_retries=0)
    for _ in range(16):
        with client.messages.stream(
            model="smol", max_tokens=4, messages=[{"role": "user", "content": "Say hello."}]
        ) as stream:
            "".join(stream.text_stream)
            final = stream.get_final_message()
        assert final.role == "assistant"
        assert final.stop_reason in ("end_turn", "max_tokens")


def test_anthropic_sdk_messages(smol_daemon: ThreadDaemon) -> None:
    import anthropic

    # x-api-key is how the Anthropic SDK (and Claude Code) send the key
    client = anthropic.Anthropic(base_url=smol_daemon.url, api_key=KEY, max_retries=0)
    msg = client.messages.create(
        model="smol", max_tokens=8, messages=[{"role": "user", "content": "Say hello."}]
    )
    assert msg.role == "assistant"
    assert msg.content[0].type == "text"
    assert msg.usage.output_tokens >= 1
    with client.messages.stream(
        model="smol", max_tokens=8, messages=[{"role": "user", "content": "Say hello."}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text
    assert final.stop_reason in ("end_turn", "max_tokens")
    tool = client.messages.create(
        model="smol",
        max_tokens=16,
        tools=[{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}],
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "tu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "Sunny"}],
            },
        ],
    )
    assert tool.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert tool.content
    assert all(b.type in ("text", "tool_use") for b in tool.content)
    count = client.messages.count_tokens(
        model="smol", messages=[{"role": "user", "content": "Say hello."}]
    )
    assert count.input_tokens >= 2
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=smol_daemon.url, api_key="bad", max_retries=0).messages.create(
            model="smol", max_tokens=4, messages=[{"role": "user", "content": "x"}]
        )


def test_anthropic_sdk_streams_with_tools(smol_daemon: ThreadDaemon) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=smol_daemon.url, api_key=KEY, max_retries=0)
    with client.messages.stream(
        model="smol",
        max_tokens=16,
        tools=[{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    ) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_message()
    assert {"message_start", "content_block_delta", "message_stop"} <= kinds
    assert final.content
    assert final.usage.output_tokens >= 1


def test_openai_sdk_tools_and_responses(smol_daemon: ThreadDaemon) -> None:
    import openai

    with openai.OpenAI(base_url=smol_daemon.url + "/v1", api_key=KEY, max_retries=0) as client:
        tools: Any = [
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": WEATHER},
            }
        ]
        turns: Any = [
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        ]
        done = client.chat.completions.create(
            model="smol", messages=turns, tools=tools, max_tokens=16
        )
        assert done.choices[0].finish_reason in ("stop", "length", "tool_calls")
        assert done.choices[0].message.content or done.choices[0].message.tool_calls
        chunks = list(
            client.chat.completions.create(
                model="smol", messages=turns, tools=tools, max_tokens=16, stream=True
            )
        )
        assert chunks
        assert chunks[-1].choices == [] or chunks[-1].choices[0].finish_reason is not None
        resp = client.responses.create(model="smol", input="Say hello.", max_output_tokens=16)
        assert resp.output_text
        events = list(
            client.responses.create(
                model="smol", input="Say hello.", max_output_tokens=16, stream=True
            )
        )
        types = [e.type for e in events]
        assert types[0] == "response.created"
        assert types[-1] == "response.completed"
        assert "response.output_text.delta" in types


def test_router_api_with_both_real_models(
    tmp_path: Path, llama_server_bin: Path, smollm2_path: Path, gemma_path: Path
) -> None:
    d = _daemon(
        tmp_path, llama_server_bin, {"smol": smollm2_path, "gemma": gemma_path},
        max_sidecars="2",
        base_args='["-c", "512", "-np", "1", "-t", "2", "--tags", "tiny,test"]',
    )  # fmt: skip
    try:
        with httpx.Client(base_url=d.url, timeout=120) as c:

            def status(model: str) -> dict[str, Any]:
                entries = {m["id"]: m for m in c.get("/models").json()["data"]}
                assert [m["id"] for m in c.get("/v1/models").json()["data"]] == list(entries)
                return entries[model]

            smol = status("smol")
            assert smol["status"]["value"] == "unloaded"
            assert smol["aliases"] == []
            assert smol["tags"] == ["tiny", "test"]
            assert smol["object"] == "model"
            r = c.post("/models/load", json={"model": "smol"})
            assert r.status_code == 200, r.text
            assert r.json() == {"success": True}
            wait_until(lambda: status("smol")["status"]["value"] == "loaded", 120, "smol loaded")
            assert "--ctx-size" in status("smol")["status"]["args"]
            r = c.post("/models/load", json={"model": "smol"})
            assert r.status_code == 400
            assert "already running" in r.json()["error"]["message"]
            assert c.post("/models/load", json={"model": "gemma"}).status_code == 200
            wait_until(lambda: status("gemma")["status"]["value"] == "loaded", 120, "gemma")
            # both answer, each its own model
            for model in ("smol", "gemma"):
                r = c.post(
                    "/v1/chat/completions",
                    json={"model": model, "messages": [{"role": "user", "content": "hi"}],
                          "max_tokens": 2},
                )  # fmt: skip
                assert r.status_code == 200, r.text
                assert r.json()["model"] == model
            r = c.post("/models/unload", json={"model": "smol"})
            assert r.status_code == 200, r.text
            assert status("smol")["status"]["value"] == "unloaded"
            assert status("gemma")["status"]["value"] == "loaded"
            r = c.post("/models/unload", json={"model": "smol"})
            assert r.status_code == 400
            assert "not running" in r.json()["error"]["message"]
            r = c.post("/models/load", json={"model": "nope"})
            assert r.status_code == 404
            assert r.json()["error"]["type"]
            assert c.post("/models/load", content=b"{").status_code == 400
    finally:
        d.stop()
