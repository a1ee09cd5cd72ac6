"""Shared plumbing of the slimdiff-* commands: logging, and turning known errors into one clear line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from slimdiff.errors import SlimdiffInputError
from slimdiff.termination import exit_cleanly_on_sigterm


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("lightning").propagate = False  # Lightning prints through its own handler


def run(main: Callable[[], None], prog: str) -> int:
    """Run a command body; expected input errors print `prog: error: ...` and exit 2, no traceback.

    Only SlimdiffInputError counts as expected: any other exception is a bug and propagates with its traceback.
    """
    exit_cleanly_on_sigterm()  # a cancelled or timed-out command removes its temporaries on the way out
    try:
        main()
    except SlimdiffInputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0
