"""Keeping secrets out of everything flowcli stores or prints.

Two tools, used wherever a URL or a server's text is recorded: ``mask_url`` hides the
credentials in a URL (``user:***@host``, and the values of query parameters named like
keys or tokens), and ``Scrubber`` removes known secrets from text in every shape a
server may echo them: raw, JSON-escaped (``sk\\u002d…``, any character), percent-encoded
(``sk%2D…``), HTML character references, or a mix. Text is scrubbed *before* it is cut
to length, so no part of a secret survives at the cut.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["MASK", "MIN_SECRET_LENGTH", "Scrubber", "mask_url", "url_secrets"]

MASK = "***"
# Shorter values ("EMPTY", "none") are placeholders, not secrets; scrubbing them would
# mangle ordinary words in messages.
MIN_SECRET_LENGTH = 8
_SECRET_QUERY_KEYS = re.compile(r"key|token|secret|passw|auth|sig|credential", re.IGNORECASE)


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 host
        return None
    return parts if parts.scheme and parts.netloc else None


def mask_url(url: str) -> str:
    """``url`` with its password and secret-looking query values replaced by ``***``."""
    parts = _split(url)
    if parts is None:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_QUERY_KEYS.search(key) for key, _ in pairs):
            masked = [(k, MASK if _SECRET_QUERY_KEYS.search(k) else v) for k, v in pairs]
            query = urlencode(masked, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str | None) -> list[str]:
    """The secrets a URL carries: its password (or lone user token) and secret query values."""
    parts = _split(url or "")
    if parts is None:
        return []
    found: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        user, _, password = userinfo.partition(":")
        found.append(unquote(password) if password else unquote(user))
    found += [v for k, v in parse_qsl(parts.query) if _SECRET_QUERY_KEYS.search(k)]
    return found


def _char_pattern(char: str) -> str:
    """Every way one character of a secret may be spelled in echoed text."""
    code = ord(char)
    escapes = [rf"\\U{code:08x}"]
    if code < 0x10000:
        escapes.append(rf"\\u{code:04x}")  # JSON / JavaScript
    escapes.append("".join(f"%{byte:02x}" for byte in char.encode("utf-8")))  # percent
    escapes.append(rf"&\#0*{code};|&\#x0*{code:x};")  # HTML character references
    shapes = [re.escape(char), "(?i:" + "|".join(escapes) + ")"]  # hex digits in any case
    if char == "/":
        shapes.append(r"\\/")  # JSON may escape a slash
    elif char == " ":
        shapes.append(r"\+")  # form encoding
    return "(?:" + "|".join(shapes) + ")"


class Scrubber:
    """Removes the given secrets from text, in any of the shapes above."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        distinct = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        # Longest first, so a secret that contains another is removed whole.
        ordered = sorted(distinct, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join("".join(map(_char_pattern, s)) for s in ordered))
            if ordered
            else None
        )
        self._plain = ordered

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        # The common case (nothing there in any shape) stays a cheap substring search
        # for the raw form first; the full pattern runs only when an escape could hide one.
        if not any(secret in text for secret in self._plain) and not _may_hide(text):
            return text
        return self._pattern.sub(MASK, text)

    def cut(self, text: str, limit: int) -> str:
        """Scrub, then cut to ``limit`` characters: never the other way round."""
        return self(text)[:limit]


def _may_hide(text: str) -> bool:
    return "\\" in text or "%" in text or "&#" in text or "+" in text
