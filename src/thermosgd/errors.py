"""User-facing errors.

Every mistake a user can make (bad numbers, unknown names, malformed files,
missing data sets) raises :class:`UsageError`. The CLI turns it into one line on
stderr and exit code 2; library callers get an ordinary ``ValueError`` subclass.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user: printed as one line, CLI exit code 2."""
