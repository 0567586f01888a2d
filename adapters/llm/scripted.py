"""The `scripted` language model: pattern -> reply rules from the assistant definition.

Deterministic and offline: for demos, IVR-style menus, tests and load tests. The
last user message is matched against each rule's regular expressions in order
(case-insensitive); the first rule that matches answers, else the fallback does.
The reply streams word by word, like a real model's deltas.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.runtime.ports.providers import (
    ChatMessage,
    EndCall,
    ProviderConfigError,
    reject_unknown_options,
)

DEFAULT_FALLBACK = "Sorry, I did not catch that. Could you say it another way?"


@dataclass(frozen=True, slots=True)
class ScriptedRule:
    """Any of ``patterns`` matching the user's words selects ``reply``.

    ``end_call``: hang up once the reply has been spoken (e.g. after a goodbye).
    """

    patterns: tuple[re.Pattern[str], ...]
    reply: str
    end_call: bool = False


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

    def rule_for(self, user_text: str) -> ScriptedRule | None:
        """The first rule matching ``user_text`` (None: the fallback answers)."""
        for rule in self._rules:
            if any(p.search(user_text) for p in rule.patterns):
                return rule
        return None

    def reply_for(self, user_text: str) -> str:
        """The reply the rules give to ``user_text``."""
        rule = self.rule_for(user_text)
        return rule.reply if rule is not None else self._fallback

    async def stream_reply(
        self, messages: Sequence[ChatMessage]
    ) -> AsyncGenerator[str | EndCall, None]:
        """Yield the matching reply, a word (with its trailing space) at a time."""
        user_text = next((m.content for m in reversed(messages) if m.role == "user"), "")
        rule = self.rule_for(user_text)
        for word in re.findall(r"\S+\s*", rule.reply if rule else self._fallback):
            yield word
        if rule is not None and rule.end_call:
            yield EndCall("the assistant said goodbye")


def _rule(index: int, raw: object) -> ScriptedRule:
    where = f"llm.rules[{index}]"
    if not isinstance(raw, Mapping):
        raise ProviderConfigError(f"{where}: must be a mapping with patterns and reply")
    unknown = sorted(set(map(str, raw)) - {"patterns", "reply", "end_call"})
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
    return ScriptedRule(tuple(compiled), reply.strip(), end_call)
