"""The `scripted` language model: pattern -> reply rules from the assistant definition.

Deterministic and offline: for demos, IVR-style menus, tests and load tests. The
last user message is matched against each rule's regular expressions in order
(case-insensitive); the first rule that matches answers, else the fallback does.
The reply streams word by word, like a real model's deltas.

A rule may call a tool: its arguments are templates filled from the named groups of
the patterns (``(?P<party>...)``), taken from this turn or, when missing, from the
caller's earlier turns; a rule whose arguments cannot all be filled does not match.
Once the result is back, ``reply`` is spoken with ``{result.field}`` filled from it
(``error_reply`` when the tool failed); in a rule without a tool, ``{result.field}`` is
the latest tool result of the conversation. ``end_call: true`` is shorthand for calling the
built-in ``end_call`` tool after the reply.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.runtime.ports.providers import (
    ChatMessage,
    ProviderConfigError,
    ToolCallRequest,
    ToolSpec,
    reject_unknown_options,
)

DEFAULT_FALLBACK = "Sorry, I did not catch that. Could you say it another way?"
DEFAULT_ERROR_REPLY = "I'm sorry, that did not work just now. Can I help with anything else?"
_RULE_FIELDS = {"patterns", "reply", "end_call", "tool", "say", "error_reply"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ScriptedRule:
    """Any of ``patterns`` matching the user's words selects ``reply``.

    ``end_call``: hang up once the reply has been spoken (e.g. after a goodbye).
    ``tool`` / ``arguments``: the tool to call first (``say`` is spoken before it);
    ``reply`` is then spoken with the result, ``error_reply`` when it failed.
    """

    patterns: tuple[re.Pattern[str], ...]
    reply: str
    end_call: bool = False
    tool: str = ""
    arguments: Mapping[str, str] = field(default_factory=dict)
    say: str = ""
    error_reply: str = DEFAULT_ERROR_REPLY


class ScriptedLanguageModel:
    """A LanguageModel that answers from rules."""

    def __init__(self, rules: Sequence[ScriptedRule], fallback: str = DEFAULT_FALLBACK) -> None:
        self._rules = tuple(rules)
        self._fallback = fallback

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ScriptedLanguageModel:
        """Build from the `llm:` section of an assistant definition."""
        reject_unknown_options("llm", "scripted", options, ("rules", "fallback"))
        fallback = options.get("fallback", DEFAULT_FALLBACK)
        if not isinstance(fallback, str) or not fallback.strip():
            raise ProviderConfigError("llm.fallback: must be a non-empty string")
        raw_rules = options.get("rules", [])
        if not isinstance(raw_rules, list):
            raise ProviderConfigError("llm.rules: must be a list of {patterns, reply}")
        return cls([_rule(i, raw) for i, raw in enumerate(raw_rules)], fallback.strip())

    def rule_for(
        self, user_text: str, slots: Mapping[str, str] | None = None, result: Any = None
    ) -> ScriptedRule | None:
        """The first rule matching ``user_text`` (None: the fallback answers)."""
        for rule in self._rules:
            match = next((m for p in rule.patterns if (m := p.search(user_text))), None)
            if match is None:
                continue
            if rule.tool and _fill(rule.arguments, {**(slots or {}), **_groups(match)}) is None:
                continue  # not everything the tool needs was said yet
            if not rule.tool and _render(rule.reply, slots or {}, result, strict=True) is None:
                continue  # it speaks of a tool result the conversation does not have
            return rule
        return None

    def reply_for(self, user_text: str) -> str:
        """The reply the rules give to ``user_text`` (tool rules: before their result)."""
        rule = self.rule_for(user_text)
        return rule.reply if rule is not None else self._fallback

    async def stream_reply(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> AsyncGenerator[str | ToolCallRequest, None]:
        """Yield the matching reply a word at a time (and the tool calls its rule makes)."""
        slots = self._slots(messages)
        if messages and messages[-1].role == "tool":
            for word in _words(self._after_tool(messages, slots)):
                yield word
            return
        user_text = next((m.content for m in reversed(messages) if m.role == "user"), "")
        result = _latest_result(messages)
        rule = self.rule_for(user_text, slots, result)
        if rule is None:
            for word in _words(self._fallback):
                yield word
            return
        index = self._rules.index(rule)
        if rule.tool:
            for word in _words(rule.say):
                yield word
            arguments = _typed(_fill(rule.arguments, slots) or {}, rule.tool, tools)
            yield ToolCallRequest(_call_id(index), rule.tool, json.dumps(arguments))
            return
        # A plain rule may speak of the latest tool result ("your booking number is ...").
        for word in _words(_render(rule.reply, slots, result) or rule.reply):
            yield word
        if rule.end_call:
            yield ToolCallRequest(_call_id(index), "end_call", json.dumps({"reason": "goodbye"}))

    def _slots(self, messages: Sequence[ChatMessage]) -> dict[str, str]:
        """Named groups the caller's turns filled, the latest value of each."""
        slots: dict[str, str] = {}
        for message in messages:
            if message.role != "user":
                continue
            for rule in self._rules:
                for pattern in rule.patterns:
                    if (match := pattern.search(message.content)) is not None:
                        slots.update(_groups(match))
        return slots

    def _after_tool(self, messages: Sequence[ChatMessage], slots: Mapping[str, str]) -> str:
        calls = next((m.tool_calls for m in reversed(messages) if m.tool_calls), ())
        answer = next((m for m in reversed(messages) if m.role == "tool"), None)
        rule = self._rule_of(calls[0].id) if calls else None
        if rule is None or answer is None:
            return ""
        try:
            result = json.loads(answer.content)
        except json.JSONDecodeError:
            result = None
        if isinstance(result, dict) and "error" in result and "outcome" in result:
            return _render(rule.error_reply, slots, result) or ""
        return _render(rule.reply, slots, result) or ""

    def _rule_of(self, call_id: str) -> ScriptedRule | None:
        parts = call_id.split("-")
        if len(parts) == 3 and parts[0] == "scripted" and parts[1].isdigit():
            index = int(parts[1])
            return self._rules[index] if index < len(self._rules) else None
        return None


def _latest_result(messages: Sequence[ChatMessage]) -> Any:
    answer = next((m for m in reversed(messages) if m.role == "tool"), None)
    if answer is None:
        return None
    try:
        return json.loads(answer.content)
    except json.JSONDecodeError:
        return None


def _call_id(rule_index: int) -> str:
    return f"scripted-{rule_index}-{uuid.uuid4().hex[:12]}"


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


def _groups(match: re.Match[str]) -> dict[str, str]:
    return {k: v.strip() for k, v in match.groupdict().items() if v is not None and v.strip()}


def _fill(templates: Mapping[str, str], slots: Mapping[str, str]) -> dict[str, str] | None:
    """Each argument's template filled from ``slots``; None when a slot is missing."""
    filled: dict[str, str] = {}
    for name, template in templates.items():
        missing = [key for key in _PLACEHOLDER.findall(template) if key not in slots]
        if missing:
            return None
        filled[name] = _PLACEHOLDER.sub(lambda m: slots[m.group(1)], template)
    return filled


def _typed(arguments: dict[str, str], tool: str, tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """Numbers where the tool's schema wants an integer ("four" -> 4)."""
    spec = next((t for t in tools if t.name == tool), None)
    properties = spec.parameters.get("properties", {}) if spec is not None else {}
    typed: dict[str, Any] = dict(arguments)
    for name, value in arguments.items():
        wanted = properties.get(name, {}) if isinstance(properties, Mapping) else {}
        if isinstance(wanted, Mapping) and wanted.get("type") == "integer":
            word = value.strip().lower()
            number = int(word) if word.isdigit() else _NUMBERS.get(word)
            if number is not None:
                typed[name] = number
    return typed


def _render(
    template: str, slots: Mapping[str, str], result: Any, *, strict: bool = False
) -> str | None:
    """``{slot}`` from the caller's words, ``{result.a.b}`` from the tool's result
    (``.count`` of a list is its length); ``strict``: None when a value is missing."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        path = match.group(1).split(".")
        node: Any = result if path[0] == "result" else slots.get(match.group(1))
        for part in path[1:] if path[0] == "result" else ():
            if isinstance(node, list) and part == "count":
                node = len(node)
            elif isinstance(node, Mapping):
                node = node.get(part)
            else:
                node = None
        missing = missing or node is None
        return "" if node is None else str(node)

    text = " ".join(_PLACEHOLDER.sub(value, template).split())
    return None if strict and missing else text


def _rule(index: int, raw: object) -> ScriptedRule:
    where = f"llm.rules[{index}]"
    if not isinstance(raw, Mapping):
        raise ProviderConfigError(f"{where}: must be a mapping with patterns and reply")
    unknown = sorted(set(map(str, raw)) - _RULE_FIELDS)
    if unknown:
        raise ProviderConfigError(f"{where}.{unknown[0]}: unknown field")
    reply = raw.get("reply")
    if not isinstance(reply, str) or not reply.strip():
        raise ProviderConfigError(f"{where}.reply: must be a non-empty string")
    patterns = raw.get("patterns")
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not patterns:
        raise ProviderConfigError(f"{where}.patterns: must be a non-empty list of regexes")
    compiled = []
    for j, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern:
            raise ProviderConfigError(f"{where}.patterns[{j}]: must be a non-empty string")
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise ProviderConfigError(f"{where}.patterns[{j}]: invalid regex: {exc}") from None
    end_call = raw.get("end_call", False)
    if not isinstance(end_call, bool):
        raise ProviderConfigError(f"{where}.end_call: must be true or false")
    tool, arguments = _tool(where, raw.get("tool"))
    texts = {}
    for key in ("say", "error_reply"):
        text = raw.get(key, "" if key == "say" else DEFAULT_ERROR_REPLY)
        if not isinstance(text, str):
            raise ProviderConfigError(f"{where}.{key}: must be a string")
        texts[key] = text.strip()
    if tool and end_call:
        raise ProviderConfigError(f"{where}.end_call: a rule calls one tool; drop end_call")
    return ScriptedRule(
        tuple(compiled),
        reply.strip(),
        end_call,
        tool,
        arguments,
        texts["say"],
        texts["error_reply"],
    )


def _tool(where: str, raw: object) -> tuple[str, dict[str, str]]:
    """``tool: {name, arguments: {arg: "{slot} or text"}}`` (or just a tool name)."""
    if raw is None:
        return "", {}
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ProviderConfigError(f"{where}.tool: must be a tool name or {{name, arguments}}")
    unknown = sorted(set(map(str, raw)) - {"name", "arguments"})
    if unknown:
        raise ProviderConfigError(f"{where}.tool.{unknown[0]}: unknown field")
    arguments = raw.get("arguments", {})
    if not isinstance(arguments, Mapping) or not all(
        isinstance(v, str) for v in arguments.values()
    ):
        raise ProviderConfigError(f"{where}.tool.arguments: must map names to text templates")
    return str(raw["name"]), {str(k): str(v) for k, v in arguments.items()}
