"""Builds of the course for other readers, run by a maintainer or an instructor (``python -m helpers build ...``).

- :mod:`~helpers.build.student`: ``dist/student/``, a learner's copy: notebooks with outputs cleared, the helpers
  without ``helpers/lessons/solutions/``, a README for learners (``make student``).
- :mod:`~helpers.build.book`: ``dist/book/``, the executed course as a static HTML site (jupyter-book 1.x, the
  ``book`` extra), built from the stored outputs without running anything (``make book``).
- :mod:`~helpers.build.guide`: the instructor guide page of the book: per lesson the measured run time
  (``book/timings.json``, written by ``scripts/time_notebooks.py``), a reading-time estimate, the key
  demonstrations and the exercises with the mistakes their checks recognise.

Every notebook in ``notebooks/`` is picked up, so a new lesson needs no change here. This layer reads the lesson
modules (for the exercises' hints) but never imports the solutions.
"""
