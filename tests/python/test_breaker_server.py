"""The embedded server is never restarted under its clients (breaker session 8).

Starting the server (any tdw command does) re-applies the embedded settings when its marker is
stale (a new version of tdw). It used to restart the server unconditionally: a second 'tdw run'
(refused a moment later) or a 'tdw db env' then cut a run in progress off, the run lock with
it, while that run's dbt build reconnected and went on beside the next run's in marts__next.
Run on the session's own server (conftest.pg_base_uri): nothing is restarted when these pass.
"""

from __future__ import annotations

import contextlib

import psycopg2

from tdw import db


def _postmaster_pid(server: db.EmbeddedServer) -> int:
    return server.status()["pid"]


def test_stale_marker_does_not_restart_the_server_under_a_client(settings, pg_base_uri):
    server = db.EmbeddedServer(settings)
    marker = settings.pgdata / ".tdw_tuned"
    before = _postmaster_pid(server)
    with contextlib.closing(psycopg2.connect(pg_base_uri)) as client, client.cursor() as cur:
        marker.write_text("applied: an older list of settings")
        server.start()
        cur.execute("select 1")  # the session survived
        assert cur.fetchone() == (1,)
    assert _postmaster_pid(server) == before
    assert marker.read_text() == db._tuned_marker()  # nothing needed a restart: tuned


def test_restart_needed_is_deferred_while_clients_are_connected(settings, pg_base_uri, monkeypatch):
    server = db.EmbeddedServer(settings)
    marker = settings.pgdata / ".tdw_tuned"
    before = _postmaster_pid(server)
    monkeypatch.setattr(db, "_EMBEDDED_SETTINGS", {**db._EMBEDDED_SETTINGS, "shared_buffers": "129MB"})
    try:
        with contextlib.closing(psycopg2.connect(pg_base_uri)) as client, client.cursor() as cur:
            marker.write_text("applied: an older list of settings")
            server.start()
            cur.execute("select 1")
            assert cur.fetchone() == (1,)
        assert _postmaster_pid(server) == before
        assert marker.read_text() != db._tuned_marker()  # still to do, at a later start
    finally:
        monkeypatch.undo()
        with contextlib.closing(psycopg2.connect(pg_base_uri)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("alter system set shared_buffers = %s", (db._EMBEDDED_SETTINGS["shared_buffers"],))
                cur.execute("select pg_reload_conf()")
        marker.write_text(db._tuned_marker())
