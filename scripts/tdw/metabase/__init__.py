"""Metabase dashboards as code: YAML under ``metabase/``, applied through the Metabase REST API.

Modules:

* :mod:`tdw.metabase.spec` — load and validate ``metabase/*.yml`` (collections, database,
  questions with native SQL on the marts, dashboards), render Metabase template tags;
* :mod:`tdw.metabase.client` — a small ``requests`` client of the documented REST API
  (``x-api-key`` authentication, Metabase v0.49+);
* :mod:`tdw.metabase.apply` — idempotent plan / apply (create, update, unchanged);
* :mod:`tdw.metabase.check` — run every card's SQL against the built marts;
* :mod:`tdw.metabase.exposures` — one dbt exposure per dashboard;
* :mod:`tdw.metabase.commands` — ``tdw metabase apply | check | export-exposures``.
"""
