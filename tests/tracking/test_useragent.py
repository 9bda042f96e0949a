"""partnerloop.tracking.useragent.classify: device, browser, OS and the bot flag."""

from __future__ import annotations

import pytest

from partnerloop.tracking.useragent import UserAgentInfo, classify

IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1"
)
IPHONE_CHROME = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1"
)
IPAD_SAFARI = (
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
ANDROID_PHONE_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36"
)
ANDROID_TABLET_CHROME = (
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.6367.82 Safari/537.36"
)
ANDROID_SAMSUNG = (
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 "
    "(KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36"
)
ANDROID_EDGE = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36 EdgA/124.0.2478.64"
)
ANDROID_FIREFOX_TABLET = "Mozilla/5.0 (Android 14; Tablet; rv:125.0) Gecko/125.0 Firefox/125.0"
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
WINDOWS_EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80"
)
WINDOWS_OPERA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0"
)
OPERA_PRESTO = "Opera/9.80 (Windows NT 6.1) Presto/2.12.388 Version/12.18"
WINDOWS_FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"
LINUX_FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
MACOS_SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4.1 Safari/605.1.15"
)
CHROMEOS = (
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    ("user_agent", "device", "browser", "os"),
    [
        (IPHONE_SAFARI, "mobile", "Safari", "iOS"),
        (IPHONE_CHROME, "mobile", "Chrome", "iOS"),
        (IPAD_SAFARI, "tablet", "Safari", "iOS"),
        (ANDROID_PHONE_CHROME, "mobile", "Chrome", "Android"),
        (ANDROID_TABLET_CHROME, "tablet", "Chrome", "Android"),
        (ANDROID_SAMSUNG, "mobile", "Samsung Internet", "Android"),
        (ANDROID_EDGE, "mobile", "Edge", "Android"),
        (ANDROID_FIREFOX_TABLET, "tablet", "Firefox", "Android"),
        (WINDOWS_CHROME, "desktop", "Chrome", "Windows"),
        (WINDOWS_EDGE, "desktop", "Edge", "Windows"),
        (WINDOWS_OPERA, "desktop", "Opera", "Windows"),
        (OPERA_PRESTO, "desktop", "Opera", "Windows"),
        (WINDOWS_FIREFOX, "desktop", "Firefox", "Windows"),
        (LINUX_FIREFOX, "desktop", "Firefox", "Linux"),
        (MACOS_SAFARI, "desktop", "Safari", "macOS"),
        (CHROMEOS, "desktop", "Chrome", "ChromeOS"),
    ],
)
def test_real_browsers(user_agent: str, device: str, browser: str, os: str) -> None:
    info = classify(user_agent)

    assert info == UserAgentInfo(device=device, browser=browser, os=os, is_bot=False)


@pytest.mark.parametrize(
    "user_agent",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "WhatsApp/2.23.20.0",
        "curl/8.4.0",
        "Wget/1.21.4",
        "python-requests/2.31.0",
        "python-httpx/0.27.0",
        "Go-http-client/1.1",
        "PostmanRuntime/7.37.3",
        "MyShopSync/1.0",  # anything that does not claim to be a browser
    ],
)
def test_bots_and_scripts(user_agent: str) -> None:
    info = classify(user_agent)

    assert info.is_bot is True
    assert info.device == "bot"


def test_a_bot_that_looks_like_a_phone_is_still_a_bot() -> None:
    googlebot_smartphone = (
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36 "
        "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    )

    info = classify(googlebot_smartphone)

    assert info == UserAgentInfo(device="bot", browser="Chrome", os="Android", is_bot=True)


def test_headless_chrome_is_a_bot() -> None:
    headless = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36"
    )

    info = classify(headless)

    assert info == UserAgentInfo(device="bot", browser="Chrome", os="Linux", is_bot=True)


@pytest.mark.parametrize("user_agent", [None, ""])
def test_a_missing_user_agent_is_a_bot(user_agent: str | None) -> None:
    info = classify(user_agent)

    assert info == UserAgentInfo(device="unknown", browser="Other", os="Other", is_bot=True)


def test_a_cubot_phone_is_not_a_bot() -> None:
    cubot = (
        "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/120.0.6099.230 Mobile Safari/537.36"
    )

    info = classify(cubot)

    assert info == UserAgentInfo(device="mobile", browser="Chrome", os="Android", is_bot=False)
