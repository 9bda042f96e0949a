"""What a program's portal and e-mails look like (white label), with defaults."""

from __future__ import annotations

from dataclasses import dataclass

from partnerloop.programs.models import Program

DEFAULT_BRAND_COLOR = "#1d4ed8"
DEFAULT_ACCENT_COLOR = "#0f766e"


@dataclass(frozen=True)
class Branding:
    program_id: str
    portal_name: str
    logo_url: str | None
    brand_color: str
    accent_color: str
    texts: dict[str, dict[str, str]]  # key -> language -> text
    mail_sender: str | None

    def text(self, key: str, language: str) -> str | None:
        """The program's own text for this key (in this language, else English)."""
        by_language = self.texts.get(key) or {}
        return by_language.get(language) or by_language.get("en")


def branding_of(program: Program) -> Branding:
    return Branding(
        program_id=program.id,
        portal_name=program.portal_name or program.name,
        logo_url=program.logo_url,
        brand_color=program.brand_color or DEFAULT_BRAND_COLOR,
        accent_color=program.accent_color or DEFAULT_ACCENT_COLOR,
        texts=dict(program.portal_texts or {}),
        mail_sender=program.mail_sender,
    )
