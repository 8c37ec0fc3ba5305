"""The platform under everything: where files live, the embedded server, the one error type.

- :mod:`~helpers.core.settings`: paths (checkout, ``var/``, ``PDW_HOME``) and environment variables.
- :mod:`~helpers.core.server`: the embedded PostgreSQL 18 (start, stop, status, URL).
- :mod:`~helpers.core.errors`: ``WorkbookError``, the one-sentence error a learner sees.

Imports nothing else from ``helpers``.
"""
