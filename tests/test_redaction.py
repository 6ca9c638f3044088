"""flowcli.redaction: URLs shown masked, secrets scrubbed in every echoed shape."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from flowcli.redaction import Scrubber, mask_url, url_secrets

KEY = "sk-live-0123456789abcdefXYZ"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pw123456@host:8080/v1", "http://user:***@host:8080/v1"),
        ("https://TOKEN1234@host/v1", "https://***@host/v1"),
        ("https://host/v1?api_key=abc&model=m", "https://host/v1?api_key=***&model=m"),
        ("https://host/v1?access_token=abc", "https://host/v1?access_token=***"),
        ("https://host/v1", "https://host/v1"),
        ("not a url", "not a url"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_url_secrets_are_the_password_or_lone_token_and_secret_query_values() -> None:
    assert url_secrets(f"http://user:{quote(KEY, safe='')}@h/v1") == [KEY]
    assert url_secrets("http://TOKEN1234@h/") == ["TOKEN1234"]
    assert url_secrets("http://h/v1?key=abcdefgh1&x=1") == ["abcdefgh1"]
    assert url_secrets("http://h/v1") == [] and url_secrets(None) == []


@pytest.mark.parametrize(
    "shape",
    [
        KEY,
        json.dumps(KEY).replace("-", "\\u002d"),
        "".join(f"\\u{ord(c):04X}" for c in KEY),
        quote(KEY, safe=""),
        quote(KEY, safe="").replace("%2D", "%2d"),
        "".join(f"&#{ord(c)};" for c in KEY),
        "".join(f"\\u{ord(c):04x}" if i % 2 else c for i, c in enumerate(KEY)),  # mixed
    ],
)
def test_every_shape_of_the_secret_is_scrubbed(shape: str) -> None:
    scrub = Scrubber([KEY])
    text = f"error: {shape} rejected"
    assert scrub(text) in ("error: *** rejected", 'error: "***" rejected')


def test_scrub_before_cut_leaves_no_piece_at_the_cut() -> None:
    scrub = Scrubber([KEY])
    body = "x" * (200 - len(KEY) // 2) + KEY
    assert KEY[:8] not in scrub.cut(body, 200)
    assert KEY[:8] in body[:200]  # what cutting first used to leave


def test_short_placeholders_and_ordinary_text_are_left_alone() -> None:
    scrub = Scrubber(["EMPTY", None, ""])
    assert not scrub
    assert scrub("EMPTY is fine") == "EMPTY is fine"
    assert Scrubber([KEY])("nothing secret here + 100%") == "nothing secret here + 100%"
    assert Scrubber([KEY])(KEY.upper()) == KEY.upper()  # a different string, not the key
