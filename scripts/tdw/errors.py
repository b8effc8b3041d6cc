"""User-facing errors.

A :class:`TdwError` carries one clear sentence for the person running the command; the command
line prints it without a traceback (``--debug`` shows one).
"""

from __future__ import annotations


class TdwError(Exception):
    """An error whose message is meant for the user as is."""


class InputFileError(TdwError):
    """Bad input file: the message names the file, the line and the column.

    Attributes:
        path: the file.
        line: 1-based line number in the file (1 = header), or None for a whole-file problem.
        column: the column name, or None.
    """

    def __init__(self, path, line: int | None, column: str | None, problem: str):
        self.path = str(path)
        self.line = line
        self.column = column
        self.problem = problem
        where = self.path
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {problem}")
