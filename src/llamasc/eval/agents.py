"""The agent prompt set: load it, run it across models, check each reply automatically."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llamasc.client import ChatClient
from llamasc.errors import ConfigError, UpstreamError
from llamasc.eval.run import Reporter

PROMPTS_FILE = "agent-prompts.yaml"


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid")

    json_schema: dict[str, Any] | None = None
    python_compiles: bool = False
    required_words: list[str] = Field(default_factory=list)
    regex: str | None = None
    max_words: int | None = None


class AgentPrompt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    role: str
    system: str | None = None
    user: str
    max_tokens: int = 256
    check: Check = Field(default_factory=Check)


class PromptSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    prompts: list[AgentPrompt]


def parse_prompt_set(text: str, source: str = "<text>") -> PromptSet:
    """Parse and validate a prompt-set YAML document (errors name the field path)."""
    try:
        data = yaml.safe_load(text)
        prompt_set = PromptSet.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from None
    except ValidationError as exc:
        problems = [
            f"{' -> '.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        ]
        raise ConfigError(f"{source}: invalid prompt set", details=problems) from None
    ids = [p.id for p in prompt_set.prompts]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{source}: prompt ids must be unique")
    for p in prompt_set.prompts:
        if p.check.regex is not None:
            try:
                re.compile(p.check.regex)
            except re.error as exc:
                raise ConfigError(f"{source}: prompts -> {p.id} -> check -> regex: {exc}") from None
    return prompt_set


def default_prompts_path() -> Path:
    """``./configs/agent-prompts.yaml``, else the shipped one (in the installed package, or
    in this source checkout)."""
    here = Path.cwd() / "configs" / PROMPTS_FILE
    if here.is_file():
        return here
    packaged = resources.files("llamasc").joinpath("configs", PROMPTS_FILE)
    if packaged.is_file():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[3] / "configs" / PROMPTS_FILE
    if checkout.is_file():
        return checkout
    raise ConfigError(f"no configs/{PROMPTS_FILE} here; pass --prompts PATH")


def load_prompt_set(path: Path) -> PromptSet:
    if not path.is_file():
        raise ConfigError(f"prompt set not found: {path}")
    return parse_prompt_set(path.read_text(encoding="utf-8"), str(path))


# --- checks ---------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _block(text: str, langs: set[str]) -> str:
    blocks = _FENCE.findall(text)
    for lang, body in blocks:
        if lang.lower() in langs:
            return str(body)
    return str(blocks[0][1]) if blocks else text


def schema_problems(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Problems of ``value`` against a small JSON-schema subset (type, required, properties,
    items, enum, minItems)."""
    problems: list[str] = []
    kind = schema.get("type")
    if isinstance(kind, str):
        allowed = _TYPES.get(kind, (object,))
        is_bool = isinstance(value, bool)
        if not isinstance(value, allowed) or (is_bool and kind in ("integer", "number")):
            return [f"{path}: expected {kind}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        problems += [f"{path}: missing {k!r}" for k in schema.get("required", []) if k not in value]
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                problems += schema_problems(value[key], sub, f"{path}.{key}")
    if isinstance(value, list):
        if len(value) < int(schema.get("minItems", 0)):
            problems.append(f"{path}: fewer than {schema['minItems']} items")
        if isinstance(schema.get("items"), dict):
            for i, elem in enumerate(value):
                problems += schema_problems(elem, schema["items"], f"{path}[{i}]")
    return problems


def _parse_json(text: str) -> Any:
    candidate = _block(text, {"json"}).strip()
    try:
        return json.loads(candidate)
    except ValueError:
        start, end = candidate.find("{"), candidate.rfind("}")
        if 0 <= start < end:
            return json.loads(candidate[start : end + 1])
        raise


def run_check(check: Check, reply: str) -> tuple[bool | None, list[str]]:
    """(passed, problems); passed is None when the prompt has no check."""
    problems: list[str] = []
    active = False
    if check.json_schema is not None:
        active = True
        try:
            problems += schema_problems(_parse_json(reply), check.json_schema)
        except ValueError:
            problems.append("not valid JSON")
    if check.python_compiles:
        active = True
        try:
            compile(_block(reply, {"python", "py", "python3"}), "<reply>", "exec")
        except (SyntaxError, ValueError) as exc:
            problems.append(f"does not compile: {exc}")
    if check.required_words:
        active = True
        lower = reply.lower()
        problems += [f"missing {w!r}" for w in check.required_words if w.lower() not in lower]
    if check.regex is not None:
        active = True
        if not re.search(check.regex, reply):
            problems.append(f"does not match /{check.regex}/")
    if check.max_words is not None:
        active = True
        if len(reply.split()) > check.max_words:
            problems.append(f"{len(reply.split())} words, more than {check.max_words}")
    return (not problems if active else None), problems


# --- running --------------------------------------------------------------------------------


@dataclass
class AgentReply:
    prompt_id: str
    model: str
    output: str = ""
    latency_s: float | None = None
    tokens_per_s: float | None = None
    completion_tokens: int | None = None
    passed: bool | None = None
    problems: list[str] = field(default_factory=list)
    error: str | None = None


async def run_agents(
    prompt_set: PromptSet,
    models: Sequence[str],
    client: ChatClient,
    seed: int = 0,
    reporter: Reporter | None = None,
) -> list[AgentReply]:
    """Every prompt on every model, one model at a time (so a daemon swaps models once)."""
    reporter = reporter or Reporter()
    reporter.start("agent prompts", len(models) * len(prompt_set.prompts), 0)
    replies: list[AgentReply] = []
    for model in models:
        for prompt in prompt_set.prompts:
            msgs: list[dict[str, Any]] = []
            if prompt.system:
                msgs.append({"role": "system", "content": prompt.system})
            msgs.append({"role": "user", "content": prompt.user})
            reply = AgentReply(prompt.id, model)
            try:
                done = await client.chat(
                    msgs, model=model, max_tokens=prompt.max_tokens, temperature=0.0, seed=seed
                )
            except UpstreamError as exc:
                reply.error = str(exc)
            else:
                reply.output = done.text
                reply.latency_s = done.elapsed_s
                speed = done.timings.get("predicted_per_second")
                tokens = done.usage.get("completion_tokens")
                reply.completion_tokens = int(tokens) if isinstance(tokens, int) else None
                if isinstance(speed, (int, float)):
                    reply.tokens_per_s = float(speed)
                elif reply.completion_tokens and done.elapsed_s > 0:
                    reply.tokens_per_s = reply.completion_tokens / done.elapsed_s
                reply.passed, reply.problems = run_check(prompt.check, done.text)
            replies.append(reply)
            reporter.advance()
    return replies


__all__ = [
    "AgentPrompt",
    "AgentReply",
    "Check",
    "PromptSet",
    "default_prompts_path",
    "load_prompt_set",
    "parse_prompt_set",
    "run_agents",
    "run_check",
    "schema_problems",
]
