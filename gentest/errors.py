"""User-facing errors.

A :class:`GentestError` carries one sentence for the person at the terminal. The command line
prints it and exits with code 2 (bad input); anything else that escapes is a bug and keeps its
traceback.
"""


class GentestError(Exception):
    """Bad input: an unknown name, a malformed suite, a missing data folder."""
