"""partnerloop.tracking.destinations: the open-redirect guard and query rewriting."""

from __future__ import annotations

import pytest

from partnerloop.tracking.destinations import MAX_URL_LENGTH, allowed_destination, with_query

ALLOWED = ["shop.example.com"]


# --- allowed_destination: accepted -------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example.com",
        "https://shop.example.com/",
        "http://shop.example.com/product/42?utm_source=x#reviews",
        "https://www.shop.example.com/",  # a real subdomain
        "https://eu.www.shop.example.com/cart",
        "https://shop.example.com./",  # fully qualified, trailing dot
        "https://SHOP.Example.COM/Path",  # host names are case-insensitive
        "HTTPS://shop.example.com/",
        "https://shop.example.com:8443/",
        "https://shop.example.com/@user",  # an @ in the path is not userinfo
        "https://shop.example.com/?next=https://evil.example/",  # the query is not the host
    ],
)
def test_accepts_the_allowed_host_and_its_subdomains(url: str) -> None:
    assert allowed_destination(url, ALLOWED) == url


def test_accepts_any_of_several_allowed_domains() -> None:
    allowed = ["shop.example.com", "brand.example.org"]

    assert allowed_destination("https://brand.example.org/x", allowed) == (
        "https://brand.example.org/x"
    )
    assert allowed_destination("https://blog.brand.example.org/", allowed) == (
        "https://blog.brand.example.org/"
    )


def test_accepts_a_url_of_exactly_the_maximum_length() -> None:
    url = "https://shop.example.com/" + "a" * (MAX_URL_LENGTH - len("https://shop.example.com/"))

    assert allowed_destination(url, ALLOWED) == url


# --- allowed_destination: refused --------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        # other hosts
        "https://evil.example/",
        "https://example.com/",  # the parent domain is not allowed
        "https://shop.example.org/",
        # the allowed name placed where a naive check would find it
        "https://shop.example.com@evil.example/",
        "https://shop.example.com:443@evil.example/",
        "https://user:pw@shop.example.com/",  # any userinfo is refused
        "https://evil.example/?shop.example.com",
        "https://evil.example/shop.example.com",
        "https://evil.example/#shop.example.com",
        "https://shop.example.com.evil.example/",
        "https://evilshop.example.com/",  # a longer name, not a subdomain
        "https://shop-example.com/",
        "https://shop.example.com%2eevil.example/",
        "https://evil.example\u3002shop.example.com/",  # ideographic full stop
        # other schemes and scheme-relative URLs
        "javascript:alert(1)",
        "javascript://shop.example.com/%0aalert(1)",
        "JavaScript:alert(document.domain)",
        "data:text/html,<script>alert(1)</script>",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "ftp://shop.example.com/",
        "file:///etc/passwd",
        "//evil.example",
        "//shop.example.com/",
        "/relative/path",
        "shop.example.com/path",
        "https:shop.example.com",
        "https:///shop.example.com",
        "https://",
        "",
        # backslashes, which browsers read as slashes
        "https://evil.example\\@shop.example.com/",
        "https:\\\\evil.example",
        "https://shop.example.com\\@evil.example/",
        "/\\evil.example",
        # whitespace and NUL
        " https://shop.example.com/",
        "https://shop.example.com/ ",
        "https://shop.example.com/a b",
        "https://evil.example\t.shop.example.com/",
        "https://shop.example.com/\r\nSet-Cookie:x=1",
        "https://evil.example\n.shop.example.com/",
        "https://shop.example.com\x00.evil.example/",
        # bad ports
        "https://shop.example.com:99999/",
        "https://shop.example.com:65536/",
        "https://shop.example.com:-1/",
        "https://shop.example.com:abc/",
        "https://shop.example.com:80:80/",
    ],
)
def test_refuses_open_redirect_tricks(url: str) -> None:
    assert allowed_destination(url, ALLOWED) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example.com/a\x01b",
        "https://shop.example.com/a\x0bb",
        "https://shop.example.com/a\x0cb",
        "https://shop.example.com/a\x1fb",
        "https://shop.example.com/a\x7fb",
        "\x0bhttps://shop.example.com/",
        "https://evil.example\x0b.shop.example.com/",
    ],
)
def test_refuses_other_control_characters(url: str) -> None:
    assert allowed_destination(url, ALLOWED) is None


def test_refuses_a_url_longer_than_the_maximum() -> None:
    url = "https://shop.example.com/" + "a" * (
        MAX_URL_LENGTH + 1 - len("https://shop.example.com/")
    )

    assert allowed_destination(url, ALLOWED) is None


def test_refuses_everything_when_no_domain_is_allowed() -> None:
    assert allowed_destination("https://shop.example.com/", []) is None


# --- with_query --------------------------------------------------------------------------


def test_with_query_appends_to_a_url_without_a_query() -> None:
    url = with_query("https://shop.example.com/p", [("plclid", "clk_1")])

    assert url == "https://shop.example.com/p?plclid=clk_1"


def test_with_query_replaces_a_param_of_the_same_name_and_keeps_the_rest() -> None:
    url = with_query(
        "https://shop.example.com/p?a=1&plclid=old&b=2#reviews", [("plclid", "clk_new")]
    )

    assert url == "https://shop.example.com/p?a=1&b=2&plclid=clk_new#reviews"


def test_with_query_replaces_every_repetition_of_the_name() -> None:
    url = with_query("https://shop.example.com/?x=1&y=2&x=3", [("x", "4")])

    assert url == "https://shop.example.com/?y=2&x=4"


def test_with_query_keeps_blank_values_and_repeated_other_params() -> None:
    url = with_query("https://shop.example.com/?a=&tag=1&tag=2", [("utm_source", "aff")])

    assert url == "https://shop.example.com/?a=&tag=1&tag=2&utm_source=aff"


def test_with_query_adds_several_params_in_order() -> None:
    url = with_query("https://shop.example.com/#top", [("sub1", "x"), ("plclid", "clk_1")])

    assert url == "https://shop.example.com/?sub1=x&plclid=clk_1#top"


def test_with_query_encodes_the_new_values() -> None:
    url = with_query("https://shop.example.com/", [("q", "a b&c=d#e")])

    assert url == "https://shop.example.com/?q=a+b%26c%3Dd%23e"


def test_with_query_without_params_returns_the_url_untouched() -> None:
    original = "https://shop.example.com/p?q=a%20b&flag#frag"

    assert with_query(original, []) == original
