"""The one pattern of every command-line tool (`python -m bootstrap...`, `python -m bench...`):

    @cli.command
    def main(argv: list[str] | None = None) -> int:
        parser = cli.parser("bench.run", __doc__)
        ...

    if __name__ == "__main__":
        sys.exit(main())

A configuration error (a bad setting, no credentials, an unreachable bucket) prints as one line
on stderr and exits with 2; so does a usage error, the way argparse reports it.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

from botocore.exceptions import NoCredentialsError, NoRegionError, ProfileNotFound

from spark.settings import ConfigError

Main = Callable[..., int]
CONFIGURATION_ERRORS = (ConfigError, NoCredentialsError, NoRegionError, ProfileNotFound)


def parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of `python -m <module>`, whose help is the module's docstring as written."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def command(main: Main) -> Main:
    """Configuration errors as one line and exit code 2; argparse's exits as return codes, so
    that `main([...])` in a test returns what the shell would see."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            return main(*args, **kwargs)
        except CONFIGURATION_ERRORS as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except SystemExit as done:  # --help, or a usage error argparse already printed
            return done.code if isinstance(done.code, int) else 2

    return wrapper
