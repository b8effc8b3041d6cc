"""Production-like Trackdéchets source simulator.

``simulate(dsn, scale=...)`` (re)creates schema ``default$default`` with the production schema
(``schema.sql``) and realistic, reproducible data; ``advance(dsn, days=...)`` evolves it day by
day as production would. See ``generate.py`` and ``advance.py``.
"""

from .advance import advance
from .generate import simulate

__all__ = ["simulate", "advance"]
