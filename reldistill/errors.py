"""User-facing errors: one sentence naming the file/field and the fix; the CLI exits non-zero."""

from __future__ import annotations


class UserError(Exception):
    """An error the user caused and can fix (bad file, missing column, offline model...).

    The CLI prints ``str(err)`` as one line, without a traceback, and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
