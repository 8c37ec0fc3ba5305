"""Errors the workbook expects and explains in one sentence (introduced in 00_start_here)."""
from __future__ import annotations


class WorkbookError(Exception):
    """An expected failure: the message says what happened and what to do, no stack trace needed."""


def show_without_traceback() -> None:
    """In IPython, print WorkbookError as one line instead of a traceback (called by ``lesson()``)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return
    ip = get_ipython()
    if ip is None:
        return

    def _handler(shell, etype, evalue, tb, tb_offset=None):
        print(f"WorkbookError: {evalue}", file=__import__("sys").stderr)
        return None

    ip.set_custom_exc((WorkbookError,), _handler)
