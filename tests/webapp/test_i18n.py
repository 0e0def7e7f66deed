"""Language choice, Babel formatting and the message catalogs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from smartbank.web.ui import i18n
from smartbank.web.ui.i18n import Formatter, negotiate

UI = Path(i18n.__file__).parent


def test_the_language_comes_from_the_cookie_then_the_browser() -> None:
    assert negotiate(None, "zh-CN,zh;q=0.9,en;q=0.8") == "zh-Hans"
    assert negotiate(None, "en-US,en;q=0.9") == "en"
    assert negotiate(None, "en;q=0.5, zh-Hans;q=0.9") == "zh-Hans"
    assert negotiate(None, "zh-TW,fr;q=0.9") == "en"  # traditional script: not offered, English is the default
    assert negotiate(None, "fr-FR, de;q=0.5") == "en"
    assert negotiate(None, "zh;q=0, en") == "en"
    assert negotiate(None, "zh;q=bad, en;q=0.1") == "en"
    assert negotiate(None, None) == "en"
    assert negotiate("zh-Hans", "en") == "zh-Hans"
    assert negotiate("klingon", "zh-CN") == "zh-Hans"


def test_money_numbers_and_dates_follow_the_locale() -> None:
    en, zh = Formatter("en", "Asia/Shanghai"), Formatter("zh-Hans", "Asia/Shanghai")
    assert en.money(123_456, "CNY") == "CN¥1,234.56"
    assert zh.money(123_456, "CNY") == "¥1,234.56"
    assert en.money(-5, "CNY") == "-CN¥0.05"
    assert en.money(5, "CNY", signed=True) == "+CN¥0.05"
    assert en.money(1234, "JPY") == "¥1,234"
    assert zh.number(1234567) == "1,234,567"
    moment = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    assert en.datetime(moment, "short") == "3/2/26, 10:00\u202fAM"
    assert zh.datetime(moment, "short") == "2026/3/2 10:00"
    assert zh.date(moment) == "2026年3月2日"


def test_messages_are_translated_with_their_parameters() -> None:
    zh = Formatter("zh-Hans", "Asia/Shanghai")
    assert zh.gettext("Your accounts") == "您的账户"
    assert zh.gettext("Hello, %(name)s", name="王芳") == "您好，王芳"
    assert Formatter("en", "Asia/Shanghai").gettext("Hello, %(name)s", name="Li") == "Hello, Li"


def test_the_catalogs_hold_every_message_of_the_code_and_translate_each() -> None:
    method_map = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "N_": None}
    in_code = {message for _, _, message, *_ in extract_from_dir(str(UI), method_map, keywords=keywords)}
    with (UI / "locales" / "zh_Hans" / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po)
    translated = {m.id: m.string for m in catalog if m.id}
    assert in_code - set(translated) == set(), "run the extract/update steps of docs/webapp.md"
    assert sorted(m for m, text in translated.items() if not text) == []
