"""Workshop mode: N learners on one PostgreSQL server (``python -m helpers workshop ...``).

* :mod:`helpers.workshop.provision`: ``provision`` (one login role per learner, one shared template loaded once),
  ``status`` and ``teardown`` (drops exactly what provision created: roles marked with ``pdw-workshop:``, the
  learners' databases and the shared template);
* :mod:`helpers.workshop.loadtest`: N learners run a notebook at the same time, each as its own role;
* :mod:`helpers.workshop.cli`: the command line.

A learner's environment carries ``DATABASE_URL`` (their own role) and ``PDW_WORKSHOP`` (the workshop's prefix), so
``lesson()`` copies the shared template instead of loading the data again. The JupyterHub side lives in
``workshop/jupyterhub_config.py``. This layer may import the toolkit, the data world and the core, never a lesson.
"""
