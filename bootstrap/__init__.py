"""Operations, by role: local (this machine, AWS stand-ins), aws (provisioning), sample (demo)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

from spark.settings import ConfigError


def one_line_errors(main: Callable[..., int]) -> Callable[..., int]:
    """For command mains: a configuration error prints as one line and exits with 2."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            return main(*args, **kwargs)
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    return wrapper
