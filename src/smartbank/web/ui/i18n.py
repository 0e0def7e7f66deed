"""Languages of the web app: which one a request gets, its message catalog, and Babel formatting.

Catalogs are the ``.po`` files under ``locales/`` (see docs/webapp.md for the extract/update
workflow); they are compiled in memory when first used, so no binary ``.mo`` file is committed.
Money, numbers and dates are always formatted by Babel for the request's locale.
"""

from __future__ import annotations

import datetime as dt
import functools
import gettext
import io
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal

from smartbank.kernel.money import currency_exponent

LOCALES_DIR: Final = Path(__file__).parent / "locales"
#: The cookie that keeps a language chosen on the page (wins over Accept-Language).
LANGUAGE_COOKIE: Final = "sb_lang"
DEFAULT: Final = "en"
#: Language tag (as in the cookie and ``<html lang>``) → Babel locale identifier.
LANGUAGES: Final = {"en": "en", "zh-Hans": "zh_Hans_CN"}
#: Names shown in the language switcher, each in its own language.
LANGUAGE_NAMES: Final = {"en": "English", "zh-Hans": "简体中文"}
#: The catalog folder of each non-English language.
_CATALOGS: Final = {"zh-Hans": "zh_Hans"}


def N_(message: str) -> str:
    """Mark a message for extraction (``pybabel extract -k N_``) without translating it here."""
    return message


@functools.cache
def translations(tag: str) -> gettext.NullTranslations:
    folder = _CATALOGS.get(tag)
    if folder is None:
        return gettext.NullTranslations()
    with (LOCALES_DIR / folder / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po, locale=folder)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def _tag_for(language: str) -> str | None:
    """The supported tag for one Accept-Language or cookie value (``zh``, ``zh-CN``, ``zh-Hans``, ``en-GB``)."""
    value = language.strip().lower().replace("_", "-")
    if value.startswith("zh"):
        # Traditional-script variants (zh-Hant, zh-TW, zh-HK) are not offered: English serves them better.
        if "hant" in value or value in {"zh-tw", "zh-hk", "zh-mo"}:
            return None
        return "zh-Hans"
    if value == "en" or value.startswith("en-"):
        return "en"
    return None


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The language tag for a request: the cookie when it names a supported one, else the browser's choice."""
    if cookie and cookie in LANGUAGES:
        return cookie
    choices: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "")[:500].split(",")[:20]):
        name, _, params = part.partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        tag = _tag_for(name) if name.strip() != "*" else None
        if tag is not None and quality > 0:
            choices.append((-quality, index, tag))
    return min(choices)[2] if choices else DEFAULT


@dataclass(frozen=True, slots=True)
class Formatter:
    """Formats for one language: messages, money, numbers and moments in the bank's time zone."""

    tag: str
    timezone: str

    @property
    def locale(self) -> Locale:
        return Locale.parse(LANGUAGES[self.tag])

    def gettext(self, message: str, **params: object) -> str:
        text = translations(self.tag).gettext(message)
        return text % params if params else text

    def money(self, amount_minor: int, currency: str, *, signed: bool = False) -> str:
        value = Decimal(amount_minor).scaleb(-currency_exponent(currency))
        text = format_currency(value, currency, locale=self.locale)
        if signed and amount_minor > 0:
            text = "+" + text
        return text

    def number(self, value: int | Decimal) -> str:
        return format_decimal(value, locale=self.locale)

    def datetime(self, moment: dt.datetime, width: str = "medium") -> str:
        return format_datetime(moment, width, tzinfo=ZoneInfo(self.timezone), locale=self.locale)

    def date(self, moment: dt.datetime) -> str:
        return format_date(moment.astimezone(ZoneInfo(self.timezone)).date(), "medium", locale=self.locale)
