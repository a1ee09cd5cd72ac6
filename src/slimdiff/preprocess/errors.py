"""Errors of the preprocessing stage: each names the subject or file and says what is wrong, on one line."""

from __future__ import annotations

from slimdiff.data.ingest import DataError
from slimdiff.errors import SlimdiffInputError


class PreprocessError(DataError):
    """A subject whose preprocessing cannot give a usable result (empty mask, unreadable file, ...).

    A DataError, so `data.ingest.on_bad_subject` treats it like any other bad subject."""


class BackendMissingError(SlimdiffInputError):
    """The configured brain-extraction backend's package is not installed; the message says how to install it."""


class WeightsError(SlimdiffInputError):
    """A network weights file that is missing or whose sha256 differs from the pinned one; names the file."""
