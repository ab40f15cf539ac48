"""The page's words and HTML: Jinja2 templates (autoescaped), one catalogue per language.

The stylesheet is inlined and allowed by its hash in the Content-Security-Policy, so the page
needs no other request and no ``unsafe-inline``; no script at all (Zalo's and Facebook's in-app
browsers, and a phone with JavaScript off, all submit the plain form).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from broker import ratingscale
from broker.ratingscale import LEVEL_STYLES, level_style

from .faces import face_svg

LANGUAGES = ("vi", "en")
_DIR = Path(__file__).parent
# each level's tile colour as a class (the terminal's colours): an inline style="" attribute would need the
# CSP's 'unsafe-hashes', so the page carries no style attribute at all
CSS = (_DIR / "templates" / "site.css").read_text(encoding="utf-8").strip() + "\n" + "".join(
    f".tone-{tone}{{background:{style.tile}}}" for tone, style in LEVEL_STYLES.items())
CSS_HASH = "sha256-" + base64.b64encode(hashlib.sha256(CSS.encode("utf-8")).digest()).decode()
CSP = ("default-src 'none'; " f"style-src '{CSS_HASH}'; " "img-src 'none'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")


@cache
def texts(language: str) -> dict[str, str]:
    if language not in LANGUAGES:
        raise ValueError(f"no page catalogue for language {language!r}")
    data = tomllib.loads((_DIR / "i18n" / f"{language}.toml").read_text(encoding="utf-8"))
    if language != "vi" and set(data) != set(texts("vi")):
        raise ValueError(f"web/i18n/{language}.toml keys differ from vi.toml: {sorted(set(data) ^ set(texts('vi')))}")
    return {k: str(v) for k, v in data.items()}


_env = Environment(loader=FileSystemLoader(str(_DIR / "templates")), autoescape=select_autoescape(["j2"]),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def day_text(day: dt.date) -> str:
    return day.strftime("%d/%m/%Y")  # how a slip and a Vietnamese reader write a date


def render(template: str, lang: str, **ctx: Any) -> str:
    t = texts(lang)
    other = "en" if lang == "vi" else "vi"
    # the stylesheet verbatim (ours, not input): escaped, its bytes would no longer match the CSP hash
    return _env.get_template(template).render(t=t, lang=lang, other_lang=other, css=Markup(CSS), **ctx)


def levels(lang: str, scale: int) -> list[dict[str, Any]]:
    """Best first, as on the terminal: score, label (no-break spaces kept), tile colour, face."""
    labels = ratingscale.levels(lang, scale)
    return [{"score": scale - i, "label": label, "tone": level_style(scale - i, scale).tone,
             "face": face_svg(scale - i, scale)} for i, label in enumerate(labels)]


def reasons(lang: str, codes: tuple[str, ...], checked: set[str]) -> list[dict[str, Any]]:
    return [{"code": c, "label": ratingscale.reason_label(lang, c), "checked": c in checked} for c in codes]
