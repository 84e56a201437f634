"""
Which database an index lives in: the configuration's C{database} (and
C{--database}) names either an SQLite file or a PostgreSQL server by a
C{postgresql://} URL.  L{openIndex} makes the index for either, and
L{displayName} names it in messages without its password.
"""

import importlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: The URL schemes naming a PostgreSQL database (libpq's).
POSTGRESQL_SCHEMES = ("postgresql", "postgres")


class DatabaseUnusable(Exception):
    """
    The database named cannot be used as an index: a URL of no known
    scheme, or PostgreSQL's driver is not installed.
    """


def isURL(database):
    """
    @return: whether C{database} names a PostgreSQL server rather than an
        SQLite file.
    """
    return database.partition("://")[0].lower() in POSTGRESQL_SCHEMES


def displayName(database):
    """
    The database as messages show it: a URL with its password (in the
    user part or the query) replaced by C{***}; a file name as it is.
    """
    if not isURL(database):
        return database
    try:
        parts = urlsplit(database)
        netloc = parts.netloc
        if parts.password is not None:
            user, _, host = netloc.rpartition("@")
            netloc = "%s:***@%s" % (user.partition(":")[0], host)
        query = urlencode(
            [(key, "***" if key == "password" else value) for key, value in parse_qsl(parts.query, keep_blank_values=True)],
            safe="/",
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "%s://***" % (database.partition("://")[0],)


def checkURL(url):
    """
    Check a PostgreSQL URL's syntax (without connecting).

    @raise DatabaseUnusable: it is malformed, or psycopg is missing; the
        message says which, without the password.
    """
    conninfo = _driver().conninfo
    try:
        conninfo.conninfo_to_dict(url)
    except Exception as e:
        raise DatabaseUnusable("%s: not a PostgreSQL URL (%s)" % (displayName(url), _oneLine(e)))


def _oneLine(error):
    return " ".join(str(error).split()) or type(error).__name__


def _driver():
    try:
        import psycopg

        importlib.import_module("psycopg_pool")
    except ImportError:
        raise DatabaseUnusable("an index in PostgreSQL needs psycopg 3 and psycopg_pool: pip install 'dicomd[postgresql]'")
    return psycopg


def openIndex(database, node=None):
    """
    The index in C{database}, not opened yet.

    @param database: an SQLite file name, or a C{postgresql://} URL.
    @param node: the name of this daemon among those sharing a
        PostgreSQL index, or C{None} for the host's name.
    @return: an L{SQLiteArchiveIndex<dicomd.archive.index.SQLiteArchiveIndex>}
        or a L{PostgreSQLArchiveIndex
        <dicomd.archive.postgresql.PostgreSQLArchiveIndex>}.
    @raise DatabaseUnusable: a URL that cannot be used.
    """
    if not isURL(database):
        from dicomd.archive.index import SQLiteArchiveIndex

        return SQLiteArchiveIndex(database)
    checkURL(database)
    from dicomd.archive.postgresql import PostgreSQLArchiveIndex

    return PostgreSQLArchiveIndex(database, node=node)
