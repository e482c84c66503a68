"""Server store URLs: ``postgresql://user@host:port/dbname?store=NAME``, without a driver.

A URL goes to libpq as it is (so its own environment works: ``PGPASSWORD``, ``~/.pgpass``,
``PGSERVICE``...), except for ``store``, the store's name: several projects share one database,
each store in a schema of its own. A password, in the URL or its query, is never shown:
:func:`masked` is what every message and repr says.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode

#: URL schemes of a PostgreSQL store (libpq's own two).
SCHEMES = ("postgresql", "postgres")
#: The store name (schema) when the URL gives none.
DEFAULT_STORE_NAME = "experiments"
STORE_PARAMETER = "store"
MASK = "***"
# A plain, unquoted PostgreSQL identifier (at most 63 bytes); pg_ names are the system's.
_STORE_NAME = re.compile(r"(?!pg_)[a-z_][a-z0-9_]{0,62}")


def is_server_url(location: str | Path) -> bool:
    """Whether ``location`` names a server store (a URL), not a store folder."""
    if not isinstance(location, str):
        return False
    scheme, separator, _ = location.partition("://")
    return bool(separator) and scheme.lower() in SCHEMES


def _parts(url: str) -> tuple[str, str, str, str]:
    """``url`` as ``scheme://``, authority (``user:password@host:port``), path and query.

    Split by hand: ``urllib.parse`` writes ``postgresql:///db`` (no host: libpq's default or a
    service) back as ``postgresql:/db``, which libpq does not read.
    """
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    return f"{scheme}://", authority, slash + path, query


def _joined(prefix: str, authority: str, path: str, query: str) -> str:
    return f"{prefix}{authority}{path}" + (f"?{query}" if query else "")


def masked(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (``postgresql://user:***@host/db``)."""
    prefix, authority, path, query = _parts(url)
    user, at, hosts = authority.rpartition("@")
    if at and ":" in user:
        authority = f"{user.partition(':')[0]}:{MASK}@{hosts}"
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key == "password" for key, _ in pairs):
        query = urlencode([(key, MASK if key == "password" else value) for key, value in pairs], safe="*")
    return _joined(prefix, authority, path, query)


# A server store's URL inside other text (a command line's argument such as --xp-store=URL).
_URL_IN_TEXT = re.compile(r"(?i)\bpostgres(?:ql)?://[^\s'\"]*")


def masked_in(text: str) -> str:
    """``text`` with the password of every server store URL in it masked (see :func:`masked`)."""
    return _URL_IN_TEXT.sub(lambda match: masked(match.group(0)), text)


def secrets_in(url: str) -> list[str]:
    """The passwords written in ``url`` (to be masked wherever its text could appear)."""
    _, authority, _, query = _parts(url)
    found = [value for key, value in parse_qsl(query, keep_blank_values=True) if key == "password" and value]
    user, at, _ = authority.rpartition("@")
    if at and ":" in user:
        found.append(user.partition(":")[2])
    # As written (percent-encoded) and as libpq reads it.
    return sorted({*found, *(unquote(value) for value in found)} - {""}, key=len, reverse=True)


class BadURL(ValueError):
    """A server store URL that cannot be used; the message says why and what to do."""


def split_store(url: str) -> tuple[str, str]:
    """``url`` without its ``store`` parameter (what libpq takes), and the store's name.

    Raises :class:`BadURL` for a store name that is not a plain identifier.
    """
    prefix, authority, path, query = _parts(url)
    pairs = parse_qsl(query, keep_blank_values=True)
    names = [value for key, value in pairs if key == STORE_PARAMETER]
    if not names:
        return url, DEFAULT_STORE_NAME
    name = names[-1]
    if not _STORE_NAME.fullmatch(name):
        raise BadURL(
            f"store name {name!r} in {masked(url)}: use lowercase letters, digits and _ "
            "(at most 63, not starting with a digit or pg_)"
        )
    rest = urlencode([(key, value) for key, value in pairs if key != STORE_PARAMETER])
    return _joined(prefix, authority, path, rest), name
