"""User-facing errors.

A :class:`GentestError` carries one sentence for the person at the terminal. The command line
prints it and exits with code 2 (bad input); anything else that escapes is a bug and keeps its
traceback.
"""


class GentestError(Exception):
    """Bad input: an unknown name, a malformed suite, a missing data folder."""


class NotApplicable(Exception):
    """Raised by a measure that does not apply to a run (e.g. BackPACK on an unsupported
    model). Recorded with its reason, scored as "n/a", not as an error."""
