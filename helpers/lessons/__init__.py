"""Lesson-only code: one module per notebook, named for its topic, with its reference solutions in ``solutions/``.

A notebook imports its module under a short name::

    from helpers.lessons import indexing as l3

==========================  =====================================
notebook                    module
==========================  =====================================
``01_schema_design``        :mod:`~helpers.lessons.schema_design`
``02_normalization``        :mod:`~helpers.lessons.normalization`
``03_indexing``             :mod:`~helpers.lessons.indexing`
``04_n_plus_one``           :mod:`~helpers.lessons.n_plus_one`
``05_query_patterns``       :mod:`~helpers.lessons.query_patterns`
``06_partitioning``         :mod:`~helpers.lessons.partitioning`
``07_transactions``         :mod:`~helpers.lessons.transactions`
``08_migrations``           :mod:`~helpers.lessons.migrations`
``09_monitoring``           :mod:`~helpers.lessons.monitoring`
``10_patterns``             :mod:`~helpers.lessons.patterns`
``11_scaling``              :mod:`~helpers.lessons.scaling`
``12_backup_restore``       :mod:`~helpers.lessons.backup`
``13_design_checklist``     :mod:`~helpers.lessons.checklist`
==========================  =====================================

A lesson module registers its exercises (:mod:`helpers.exercises`) when imported, and may import the toolkit, the
data world and the core. Nothing outside ``helpers.lessons`` imports a lesson, and a lesson does not import another
lesson: what two lessons share belongs in the toolkit. ``solutions/`` is for the tests only; notebooks never import it.
"""

#: Notebook stem -> module name in this package.
MODULES = {
    "01_schema_design": "schema_design",
    "02_normalization": "normalization",
    "03_indexing": "indexing",
    "04_n_plus_one": "n_plus_one",
    "05_query_patterns": "query_patterns",
    "06_partitioning": "partitioning",
    "07_transactions": "transactions",
    "08_migrations": "migrations",
    "09_monitoring": "monitoring",
    "10_patterns": "patterns",
    "11_scaling": "scaling",
    "12_backup_restore": "backup",
    "13_design_checklist": "checklist",
}
