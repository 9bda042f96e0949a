"""The translation catalogue: every text a page shows is a key looked up here,
in English or Dutch. Each language is a folder of catalogue files, one per
area of the product (partnerloop/web/locales/<language>/<area>.json); a key
may stand in one file only.

The language is the one the browser prefers among those we have
(Accept-Language, with its q-values), else English. A key missing from a
catalogue is a bug a test catches (tests/web/test_i18n.py): English is the
reference, every other language must have every key.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

LOCALES = Path(__file__).parent / "locales"
LANGUAGES = ("en", "nl")
DEFAULT = "en"


@cache
def catalogue(language: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in sorted((LOCALES / language).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for key, value in data.items():
            if key in merged:
                raise ValueError(f"{path}: key {key!r} also stands in another catalogue file")
            merged[str(key)] = str(value)
    return merged


def choose_language(accept_language: str | None, *, preferred: str | None = None) -> str:
    """The user's own setting when it names one of LANGUAGES, else the best of
    LANGUAGES for an Accept-Language header ("nl-NL,nl;q=0.9,en;q=0.8")."""
    if preferred in LANGUAGES:
        return preferred
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        base = tag.strip().lower().split("-")[0]
        if base in LANGUAGES and quality > 0:
            ranked.append((-quality, position, base))
    return sorted(ranked)[0][2] if ranked else DEFAULT


class Translator:
    def __init__(self, language: str) -> None:
        self.language = language if language in LANGUAGES else DEFAULT

    def __call__(self, key: str, **values: Any) -> str:
        text = catalogue(self.language).get(key) or catalogue(DEFAULT)[key]
        return text.format(**values) if values else text
