"""A grammar pass is a phrase heard only when it reached the end of a listed phrase."""

from __future__ import annotations

from adapters.asr.decoders import grammar_text
from adapters.asr.domain_model import domain_model

PHRASES = ("I want to cancel my reservation", "What are your opening hours")


def test_a_whole_listed_phrase_is_heard() -> None:
    model = domain_model(PHRASES)
    assert grammar_text(model, "i want to cancel my reservation") == (
        "i want to cancel my reservation"
    )


def test_a_partial_path_off_the_grammar_is_no_path() -> None:
    # What pocketsphinx returns when its search ends off the grammar's final state.
    model = domain_model(PHRASES)
    assert grammar_text(model, "i want to do you") == ""
    assert grammar_text(model, "what are your") == ""


def test_without_a_domain_model_the_text_stands() -> None:
    assert grammar_text(None, "anything at all") == "anything at all"
