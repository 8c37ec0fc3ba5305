"""Helpers for the Postgres Design Workbook.

Importing this package changes no global state. Notebooks start with::

    from helpers import lesson
    db = lesson("03_indexing")

which gives the notebook its own database (see :mod:`helpers.db`).
"""

from .db import lesson

__all__ = ["lesson"]
