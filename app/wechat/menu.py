"""The service account's menu, kept in code and pushed with ``flask wechat menu --push``."""

from __future__ import annotations

from typing import Any

from app import gateways
from app.config import current_settings
from app.wechat.conversation import H5_BASE, PAGES


def definition() -> dict[str, Any]:
    """Menu keys are answered by ``conversation.MENU_KEYS``; names are Chinese (WeChat shows one menu)."""
    miniapp = current_settings().MINIAPP_APP_ID
    return {
        "button": [
            {
                "name": "会员中心",
                "sub_button": [
                    {"type": "click", "name": "我的积分", "key": "my_points"},
                    {"type": "click", "name": "我的等级", "key": "my_tier"},
                    {"type": "click", "name": "我的权益", "key": "my_benefits"},
                    {
                        "type": "miniprogram",
                        "name": "会员小程序",
                        "appid": miniapp,
                        "pagepath": PAGES["home"],
                        "url": f"{H5_BASE.value()}/{PAGES['home']}",
                    },
                ],
            },
            {
                "name": "服务",
                "sub_button": [
                    {"type": "click", "name": "预约服务", "key": "book_service"},
                    {"type": "click", "name": "推荐购车", "key": "refer_friend"},
                    {"type": "location_select", "name": "附近经销商", "key": "nearest_dealer"},
                ],
            },
            {"type": "click", "name": "联系客服", "key": "contact_service"},
        ]
    }


def push() -> dict[str, Any]:
    """Replace the account's menu with ``definition()``; returns what was sent."""
    menu = definition()
    gateways.official_account().create_menu(menu)
    return menu
