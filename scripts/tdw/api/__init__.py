"""Secured API for state agents over the marts (issue 11).

Pieces:

- :mod:`tdw.api.security` creates the ``api_admin`` schema (clients, tokens, audit log; only the
  pipeline reads it), the read-only role ``<prefix>_api`` and the ``api`` schema: copies of the
  marts the API serves, each with a row-level security policy keyed on per-request settings
  (``tdw.scope_national``, ``tdw.scope_regions``, ``tdw.scope_departements``, ``tdw.scope_families``).
- :mod:`tdw.api.auth` creates, lists and revokes clients and tokens; rate limiter.
- :mod:`tdw.api.db` gives each request one read-only transaction under the API role.
- :mod:`tdw.api.app` is the FastAPI application (``create_app``).
- :mod:`tdw.api.commands` adds ``tdw serve`` and ``tdw api ...`` to the command line.
"""
