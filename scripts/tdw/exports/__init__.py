"""Exports on the marts (issue 8): open data, public statistics page, inspection sheets, data.gouv.fr.

Every figure comes from the ``marts`` schema (the public datasets from ``marts.od_*``, built by
``models/marts/open_data/`` with the secret statistique applied in SQL); Python only reads and
writes files. Modules: :mod:`.open_data`, :mod:`.stats_page`, :mod:`.inspection`, :mod:`.publish`,
:mod:`.commands` (``tdw export ...``, ``tdw publish data-gouv``).
"""
