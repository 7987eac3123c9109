"""Database passwords kept out of every message: URLs redacted, texts scrubbed.

Pure, with no driver: a URL is cut by hand (:func:`_split`), not by a URL parser, because the
URLs that leak are the ones a parser cuts wrongly: a password pasted unencoded, with ``@``,
``/``, ``:``, ``#``, ``?``, ``%`` or spaces in it. Everything that shows or reports a database URL
goes through :func:`redact_url`, and every message that may quote a driver goes through
:func:`scrub`; :mod:`lockstep.database` re-exports both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, quote_plus, unquote

REDACTED: Final = "***"
NOT_SHOWN: Final = "(not shown)"
# Shorter pieces of a password are left in a message: replacing every "ab" would make it
# unreadable, and such a piece says next to nothing about the password.
_MIN_SECRET_CHARS: Final = 4
_SCHEME_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&](?:password|passwd|pwd|sslpassword)=)(?P<value>[^&]*)", re.I
)
# Characters that end a URL's userinfo: unencoded in a password, they make SQLAlchemy (and any
# URL parser) split the password there and read the rest as the host or the database.
_USERINFO_ENDERS: Final = "@/?#"
_FRAGMENT_SEPARATORS = re.compile(r"[@/?#:%\s]+")


@dataclass(frozen=True)
class _Parts:
    """A URL cut where a person means it to be cut: the userinfo ends at the *last* ``@``.

    A password with an unencoded ``@``, ``/``, ``?`` or ``#`` is still read whole, so that it
    can be hidden whole; ``password`` is None when the URL has none.
    """

    scheme: str  # with "://"
    user: str | None
    password: str | None
    rest: str  # host, port, path and query


def _split(url: str) -> _Parts | None:
    match = _SCHEME_PREFIX.match(url)
    if match is None:
        return None
    remainder = url[match.end() :]
    at = remainder.rfind("@")
    if at < 0:
        return _Parts(match.group(), None, None, remainder)
    user, colon, password = remainder[:at].partition(":")
    return _Parts(match.group(), user, password if colon else None, remainder[at + 1 :])


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``; "(not shown)" when it is no URL at all.

    Cut by :func:`_split`, not by a URL parser, so that a password holding ``@``, ``/``,
    ``:``, ``#``, ``?``, ``%`` or spaces is hidden whole; a value without a scheme may be a
    bare password, so none of it is shown.
    """
    # Query passwords first: one holding an "@" must not be taken for the end of a userinfo.
    parts = _split(_QUERY_SECRET.sub(rf"\g<key>{REDACTED}", url))
    if parts is None:
        return NOT_SHOWN
    userinfo = ""
    if parts.user is not None:
        userinfo = f"{parts.user}:***@" if parts.password is not None else f"{parts.user}@"
    return f"{parts.scheme}{userinfo}{parts.rest}"


def secrets_of(url: str) -> list[str]:
    """Every string that would give away (part of) ``url``'s password, longest first.

    The password as written, decoded and encoded (a driver may print any of them), the pieces
    between URL delimiters (a parser that split the password there may print one as a host),
    query-string passwords, and, for a value that is no URL at all, the whole value.
    """
    parts = _split(_QUERY_SECRET.sub(rf"\g<key>{REDACTED}", url))
    if parts is None:
        candidates = {url, url.strip()}
    else:
        candidates = set()
        passwords = [m.group("value") for m in _QUERY_SECRET.finditer(url)]
        if parts.password is not None and parts.password != REDACTED:
            passwords.append(parts.password)
        for password in passwords:
            for form in (
                password,
                unquote(password),
                quote(password, safe=""),
                quote_plus(password),
            ):
                candidates.add(form)
                candidates.update(_FRAGMENT_SEPARATORS.split(form))
    found = {c for c in candidates if len(c) >= _MIN_SECRET_CHARS}
    return sorted(found, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """Remove ``url``'s password from ``text`` (a driver's error message, say).

    Drivers do not usually echo passwords, but an error message goes to a Kubernetes condition
    that many people can read, so belt and braces: the URL itself becomes its redacted form,
    then every string of :func:`secrets_of` becomes ``***``.
    """
    if url:
        text = text.replace(url, redact_url(url))
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text


def encode_stray_delimiters(url: str) -> str:
    """``url`` with the ``@ / ? #`` of its password percent-encoded, as it should have been.

    A password pasted unencoded into a URL is common; without this, SQLAlchemy would take what
    follows such a character for the host, connect somewhere else and name that "host" in its
    errors. Already-encoded passwords are left alone (``%`` is not touched).
    """
    parts = _split(url)
    if parts is None or parts.password is None or parts.user is None:
        return url
    if not any(c in parts.password for c in _USERINFO_ENDERS) and "/" not in parts.user:
        return url
    password = "".join(quote(c, safe="") if c in _USERINFO_ENDERS else c for c in parts.password)
    return f"{parts.scheme}{parts.user}:{password}@{parts.rest}"


def scheme_of(url: str) -> str | None:
    """The scheme of ``url`` (``postgresql``), or None when it has none."""
    parts = _split(url)
    return parts.scheme[: -len("://")] if parts else None
