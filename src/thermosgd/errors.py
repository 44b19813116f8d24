"""User-facing errors.

Every mistake a user can make (bad numbers, unknown names, malformed files,
missing data sets) raises :class:`UsageError`. The CLI turns it into one line on
stderr and exit code 2; library callers get an ordinary ``ValueError`` subclass.
Messages speak in library terms (``n_boot=0``, ``domain``); where one argument is
at fault it is named in ``param``, and the CLI names the flag that sets it.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user: printed as one line, CLI exit code 2.

    Args:
        message: What is wrong and how to fix it, in library terms.
        param: The library argument at fault (``"n_boot"``), or None.
    """

    def __init__(self, message: str = "", *, param: str | None = None):
        super().__init__(message)
        self.param = param
