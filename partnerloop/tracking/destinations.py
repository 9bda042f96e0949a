"""Where a link may send a shopper: only to hosts on the program's allowed list.

This is the open-redirect guard. A tracking domain that redirects anywhere it
is told becomes a phishing tool ('trusted-brand.com/r/x?url=evil.example'),
so every destination, at link creation and at click time, goes through here.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MAX_URL_LENGTH = 2048


def allowed_destination(url: str, allowed_domains: list[str]) -> str | None:
    """The URL if it is a plain http(s) URL on an allowed host, else None."""
    # Control characters, spaces and backslashes: browsers "repair" URLs with them
    # in ways a parser here would not predict, so none is allowed at all.
    if len(url) > MAX_URL_LENGTH or any(ord(ch) <= 0x20 or ch in "\\\x7f" for ch in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port
    except ValueError:
        return None
    if port == 0:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    # 'https://shop.example@evil.example/' has host evil.example: refuse any userinfo.
    if "@" in parts.netloc:
        return None
    host = parts.hostname.rstrip(".").lower()
    if any(host == domain or host.endswith("." + domain) for domain in allowed_domains):
        return url
    return None


def with_query(url: str, params: list[tuple[str, str]]) -> str:
    """Append query parameters, replacing any of the same name, keeping the fragment."""
    if not params:
        return url
    parts = urlsplit(url)
    replaced = {name for name, _ in params}
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in replaced]
    query.extend(params)
    return urlunsplit(parts._replace(query=urlencode(query)))
