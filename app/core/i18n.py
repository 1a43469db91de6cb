"""Locales: zh_CN by default, en available.

The locale of a request is the member's preference (when a handler knows the member), else the
best match of ``Accept-Language``, else zh_CN. Jobs render in the member's locale with
``in_locale(member.locale)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from babel import Locale, support
from flask import Flask, g, has_request_context, request
from flask_babel import Babel, Domain, force_locale, get_locale

from app.config import PROJECT_ROOT

DEFAULT_LOCALE = "zh_CN"
SUPPORTED_LOCALES = ("zh_CN", "en")


class CatalogDomain(Domain):
    """Loads ``locales/zh_CN`` for Babel's ``zh_Hans_CN`` (Babel adds the script, the catalogs don't)."""

    def get_translations(self) -> support.NullTranslations:
        locale = get_locale()
        if locale is None:
            return support.NullTranslations()
        name = catalog_name(locale)
        cache = self.get_translations_cache(None)
        if name not in cache:
            translations = support.Translations()
            for dirname in self.translation_directories:
                translations.merge(support.Translations.load(dirname, [name], self.domain[0]))
            cache[name] = translations
        return cache[name]


def catalog_name(locale: Locale) -> str:
    """Our public locale code (zh_CN, en) for a Babel locale."""
    return "zh_CN" if locale.language == "zh" else "en"


babel = Babel()
domain = CatalogDomain(translation_directories=[str(PROJECT_ROOT / "locales")])

#: The project's gettext functions: import these, not flask_babel's.
gettext = _ = domain.gettext
lazy_gettext = _l = domain.lazy_gettext
ngettext = domain.ngettext


def normalize_locale(value: str | None) -> str:
    """Map free-form tags (zh, zh-CN, en-US) onto a supported locale."""
    if not value:
        return DEFAULT_LOCALE
    tag = value.replace("-", "_").lower()
    if tag.startswith("en"):
        return "en"
    return DEFAULT_LOCALE


#: Parsed once: Babel's Locale.parse is slow enough to show up on the callback's hot path.
_LOCALES = {name: Locale.parse(name) for name in SUPPORTED_LOCALES}


def select_locale() -> Locale:
    if has_request_context():
        preferred = g.get("member_locale")
        if preferred:
            return _LOCALES[normalize_locale(preferred)]
        # WeChat's callbacks send no Accept-Language: skip parsing an absent header.
        match = request.headers.get("Accept-Language") and request.accept_languages.best_match(["zh_CN", "zh", "en"])
        if match:
            return _LOCALES[normalize_locale(match)]
    return _LOCALES[DEFAULT_LOCALE]


def use_member_locale(locale: str | None) -> None:
    """Handlers call this once they know who the member is."""
    if locale:
        g.member_locale = locale


@contextmanager
def in_locale(locale: str | None) -> Iterator[None]:
    """Render messages in a member's locale outside a request (jobs, CLI)."""
    with force_locale(normalize_locale(locale)):
        yield


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "Asia/Shanghai")
    babel.init_app(app, locale_selector=select_locale)


def _catalog_markers() -> None:  # pragma: no cover - never called; pybabel extracts these texts
    """marshmallow's and webargs' fixed messages, so ``localize_messages`` can translate them."""
    _("Missing data for required field.")
    _("Field may not be null.")
    _("Invalid value.")
    _("Unknown field.")
    _("Invalid input type.")
    _("Not a valid string.")
    _("Not a valid integer.")
    _("Not a valid number.")
    _("Not a valid boolean.")
    _("Not a valid datetime.")
    _("Not a valid date.")
    _("Not a valid list.")
    _("Not a valid mapping type.")
    _("Not a valid email address.")
    _("Not a valid URL.")
    _("Not a valid UUID.")
    _("Invalid JSON body.")
