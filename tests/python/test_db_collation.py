"""Databases created by tdw sort text byte-wise (LC_COLLATE C) and keep a UTF-8 LC_CTYPE.

Why (db.WAREHOUSE_COLLATION): PostgreSQL 16 compares text under a libc collation other than C with
strcoll(), without abbreviated keys, which slows every text sort and index build of the dbt build;
glibc's C.UTF-8 (the embedded cluster's default) already sorts by code point, i.e. UTF-8 byte
order, so C changes the speed, not the results. The models still rely on the ctype knowing
accented letters: upper()/lower() (macros geo.city_key, normalise_codes), case-insensitive regexes
(geo.address_without_suffix) and POSIX classes ([[:space:]], [[:alpha:]]).
"""

from __future__ import annotations

import contextlib
import uuid

import psycopg2
import pytest

from tdw import db

# French words whose code-point order differs from a dictionary order: upper case before lower
# case, accented letters after 'z', 'œ' after every Latin-1 letter.
WORDS = ["zone", "Zone", "été", "Été", "etre", "Évry", "Evry", "cœur", "coeur", "ça", "ca", "île", "ile", "Œuvre",
         "a b", "a-b"]


@pytest.fixture
def new_database(pg_base_uri):
    created = []

    def make(*, collate: str | None = None) -> str:
        name = f"coll_{uuid.uuid4().hex[:10]}"
        if collate is None:
            assert db.ensure_database(pg_base_uri, name) is True
        else:  # a database as an older tdw (or a DBA) created it
            with contextlib.closing(psycopg2.connect(pg_base_uri)) as conn:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"create database {name} template template0 lc_collate '{collate}'")
        created.append(name)
        return name

    yield make
    with contextlib.closing(psycopg2.connect(pg_base_uri)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in created:
                cur.execute(f'drop database if exists "{name}" with (force)')


def _one(dsn: str, statement: str, params=None):
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchone()


def test_new_database_is_c_collated_with_the_clusters_ctype(pg_base_uri, new_database):
    name = new_database()
    dsn = db._with_database(pg_base_uri, name)
    template_ctype = _one(pg_base_uri, "select datctype from pg_database where datname = 'template1'")[0]
    assert db.database_collation(dsn) == ("C", template_ctype)
    assert template_ctype.lower().replace("-", "") in ("c.utf8", "en_us.utf8", "fr_fr.utf8"), template_ctype
    encoding = _one(dsn, "select pg_encoding_to_char(encoding) from pg_database where datname = current_database()")
    assert encoding == ("UTF8",)
    assert db.collation_warning(dsn) is None
    # an existing database is left alone
    assert db.ensure_database(pg_base_uri, name) is False


def test_accented_text_behaves_as_the_models_expect(pg_base_uri, new_database):
    dsn = db._with_database(pg_base_uri, new_database())
    row = _one(
        dsn,
        """
        select upper('é'), lower('ÉÈÇ'), upper('cœur'),
               'é' ~ '^[[:alpha:]]$', 'Évry' ilike 'évry%', 'é' ~* 'É',
               regexp_replace('Évry Cedex 11', '[[:space:]]+cedex([[:space:]]*[0-9]+)?$', '', 'i'),
               regexp_replace(upper(translate('Saint-Étienne', 'É', 'E')), '[^A-Z0-9]+', ' ', 'g')
        """,
    )
    assert row == ("É", "éèç", "CŒUR", True, True, True, "Évry", "SAINT ETIENNE")


def test_text_order_is_code_point_order(pg_base_uri, new_database):
    """ORDER BY (exports, distinct on, window frames) gives the code-point order glibc's C.UTF-8 gave."""
    dsn = db._with_database(pg_base_uri, new_database())
    ordered = _one(dsn, "select array_agg(w order by w) from unnest(%s::text[]) w", (WORDS,))[0]
    assert ordered == sorted(WORDS, key=lambda w: w.encode("utf-8"))
    assert ordered == sorted(WORDS)  # Python's str order is code-point order
    assert ordered.index("Zone") < ordered.index("zone") < ordered.index("Évry")
    # the same order under the C.UTF-8 collation the embedded cluster used before, where it exists
    has_c_utf8 = _one(dsn, "select count(*) from pg_collation where collname = 'C.utf8'")[0]
    if has_c_utf8:
        before = _one(dsn, 'select array_agg(w order by w collate "C.utf8") from unnest(%s::text[]) w', (WORDS,))
        assert before == (ordered,)


def test_a_database_not_c_collated_is_reported(pg_base_uri, new_database):
    name = new_database(collate="C.UTF-8")
    dsn = db._with_database(pg_base_uri, name)
    assert db.database_collation(dsn)[0] == "C.UTF-8"
    warning = db.collation_warning(dsn)
    assert warning is not None and "C.UTF-8" in warning and "Warehouse collation" in warning
