"""The data world: the store's schema, its shipped and generated data, its ORM models and its diagram.

- ``schema.sql``: the store's tables, exactly as every lesson database starts.
- :mod:`~helpers.data.datasets`: loads Chinook (shipped in ``datasets/``) and the generated tables into a database.
- :mod:`~helpers.data.generate`: the seeded generator of customers, plays, invoices at each scale.
- :mod:`~helpers.data.models`: SQLAlchemy 2 models of ``schema.sql``, column for column.
- :mod:`~helpers.data.erd`: draws the entity-relationship diagram from the catalog.

May import :mod:`helpers.core` only.
"""
