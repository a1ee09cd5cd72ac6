"""The errors a user can cause and fix: bad input files, configs, settings or command-line values.

Every expected problem with the user's input derives from SlimdiffInputError; the slimdiff-* commands print
it as one line (`prog: error: message`, exit status 2). Any other exception is a bug in this package and keeps
its traceback.
"""

from __future__ import annotations


class SlimdiffInputError(Exception):
    """An expected problem with the user's input, config or files, reported as one line (no traceback)."""


class MissingInputError(SlimdiffInputError, FileNotFoundError):
    """An input file or directory that this package needs is not there; the message names it."""


class OutputExistsError(SlimdiffInputError, FileExistsError):
    """An output that would replace or collide with files already there; the message names them."""
