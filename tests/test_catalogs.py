"""Every user-facing string is translated into the default locale (zh_CN)."""

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "_l": None}


def _extracted() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT / "app"), method_map=[("**.py", "python")], keywords=KEYWORDS
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_message_in_the_code_is_translated_to_chinese():
    with open(ROOT / "locales/zh_CN/LC_MESSAGES/messages.po", "rb") as handle:
        catalog = read_po(handle, locale="zh_CN")
    missing = sorted(m for m in _extracted() if not (catalog.get(m) and catalog.get(m).string))
    assert missing == [], "run `make i18n-extract` and translate these in locales/zh_CN: " + repr(missing)
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert fuzzy == []


def test_placeholders_survive_translation():
    import re

    with open(ROOT / "locales/zh_CN/LC_MESSAGES/messages.po", "rb") as handle:
        catalog = read_po(handle, locale="zh_CN")
    for message in catalog:
        if message.id and message.string:
            pattern = r"\{\w+\}|%\(\w+\)s"
            assert sorted(re.findall(pattern, message.id)) == sorted(re.findall(pattern, message.string)), message.id
