"""What the command-line tools share (`python -m tools.report`, `python -m tools.watch`).

Their failures end the same way as the pipeline's processes do: one line on stderr, no
traceback, exit code 2 for bad input or usage and 1 when the run itself failed (say, the broker
could not be asked).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from common.settings import SettingsError

USAGE_ERROR = 2
RUN_FAILED = 1
# What a shell reports for a process that SIGPIPE ended, as `head` leaves `cat` (128 + 13).
READER_GONE = 128 + signal.SIGPIPE


class CliError(Exception):
    """A failure the user can act on; `str(error)` is the whole message."""

    def __init__(self, message: str, exit_code: int = USAGE_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints the usage block first)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see --help)")


def run_cli(prog: str, main: Callable[[Sequence[str]], int]) -> NoReturn:
    """Call `main(argv)` and exit with its code, turning expected failures into one line."""
    try:
        code = main(sys.argv[1:])
    except CliError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        code = error.exit_code
    except SettingsError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        code = USAGE_ERROR
    except BrokenPipeError:
        # The reader stopped early (`| head`): end quietly, as Unix tools do. Python would try
        # to flush stdout again at exit and print a second error; point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = READER_GONE
    sys.exit(code)
