"""The translation catalogue: complete in every language, chosen by Accept-Language."""

from __future__ import annotations

import re

import pytest

from partnerloop.web.i18n import LANGUAGES, Translator, catalogue, choose_language


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_has_every_key_with_the_same_placeholders(language: str) -> None:
    english = catalogue("en")
    other = catalogue(language)
    assert set(other) == set(english)
    for key, text in english.items():
        assert set(re.findall(r"{(\w+)}", other[key])) == set(re.findall(r"{(\w+)}", text)), key


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "en"),
        ("", "en"),
        ("nl", "nl"),
        ("nl-NL,nl;q=0.9,en-US;q=0.8,en;q=0.7", "nl"),
        ("en-GB,en;q=0.9,nl;q=0.8", "en"),
        ("de-DE,de;q=0.9,nl;q=0.5", "nl"),
        ("fr", "en"),
        ("nl;q=0, en;q=0.1", "en"),
        ("nl;q=abc", "en"),
    ],
)
def test_the_browsers_preferred_language_we_have(header: str | None, language: str) -> None:
    assert choose_language(header) == language


def test_texts_are_filled_in() -> None:
    assert Translator("nl")("login.throttled", minutes=3) == (
        "Te veel mislukte pogingen. Probeer het over 3 minuten opnieuw."
    )
    assert Translator("xx")("login.heading") == "Sign in"
