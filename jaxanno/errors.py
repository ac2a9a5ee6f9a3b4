"""Errors that the user can fix, and the one error path that every command line shares.

A problem with the user's input or environment (a setting, a file, a flag, a folder) is a
`UserError`, a `config.ConfigError`, a `data.DataError`, or another `ValueError` /
`OSError` raised while reading inputs. Every front end (``launch.py``, ``jaxanno
run|label|report|list``, ``python -m jaxanno.label`` / ``.report``) runs its body through
`run_main`, which turns such an error into one line on stderr,

    error: <setting or file>: <what was found>; <what to do>

and exit status 2, with no traceback unless ``--verbose`` is given. Ctrl-C exits with 130.
Anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

from absl import flags

EXIT_USAGE = 2  # bad input, flags or environment: nothing was run
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
EXIT_BROKEN_PIPE = 141  # stdout closed early (128 + SIGPIPE)
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
VERBOSE_HELP = "Show the full traceback of an error (default: one line)."


class UserError(ValueError):
    """A problem with the user's input or environment, reported as one line."""


class UsageError(UserError):
    """A command-line problem: an unknown or malformed flag, a missing argument."""


def wants_verbose(argv: Sequence[str]) -> bool:
    """Whether ``--verbose`` is on the command line (read before parsing, so parse errors obey it)."""
    on = False
    for arg in argv[1:]:
        if arg == "--":
            break
        if arg in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1"):
            on = True
        elif arg in ("--noverbose", "--verbose=false", "--verbose=False", "--verbose=0"):
            on = False
    return on


def _flag_error(err: flags.Error) -> str:
    """absl's 'flag --name=value: message' as '--name: found value; message'."""
    text = " ".join(str(err).split())
    match = re.match(r"flag --([^=\s]+)=(.*?): (.*)$", text)
    if match:
        name, value, why = match.groups()
        if why.startswith("invalid literal for int()"):
            why = "expected an integer"
        elif why.startswith("could not convert string to float"):
            why = "expected a number"
        return f"--{name}: found {value!r}; {why} (see --help)"
    if isinstance(err, flags.UnrecognizedFlagError):
        return f"--{err.flagname}: unknown flag (see --help for the flags)"
    return f"{text} (see --help)"


def _os_error(err: OSError) -> str:
    """'<file>: <what happened>; <what to do>' for an operating-system error."""
    what = err.strerror or str(err)
    if err.filename is None:
        return f"{what}; check the paths given and free disk space"
    where = f"{err.filename} -> {err.filename2}" if err.filename2 else str(err.filename)
    return f"{where}: {what}; check the path, its permissions and free disk space"


def one_line(err: BaseException) -> str:
    """The message of a user-facing error as a single line (without the 'error: ' prefix)."""
    if isinstance(err, flags.Error):
        return _flag_error(err)
    if isinstance(err, OSError):
        return _os_error(err)
    text = " ".join(str(err).split()) or type(err).__name__
    if not isinstance(err, UserError) and not _raised_here(err):
        text += " (--verbose shows where)"  # raised inside a library: where it came from may matter
    return text


def _raised_here(err: BaseException) -> bool:
    """Whether `err` was raised by jaxanno's own code (its innermost frame is in this package)."""
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(_PACKAGE + os.sep)


def run_main(body: Callable[[], int | None], verbose: bool = False, stream: TextIO | None = None) -> int:
    """Run a command's body; returns its exit code, or 2 after one error line, or 130 on Ctrl-C.

    Args:
      body: the command (parsing included); returns an exit code (None means 0).
      verbose: print the traceback of a user-facing error before its line.
      stream: where errors go (default: stderr).
    """
    stream = stream or sys.stderr
    try:
        code = body()
    except KeyboardInterrupt:
        print("interrupted", file=stream)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly, as shell tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (ValueError, OSError, flags.Error) as err:
        if verbose:
            traceback.print_exc(file=stream)
        print(f"error: {one_line(err)}", file=stream, flush=True)
        return EXIT_USAGE
    return 0 if code is None else int(code)


def flag_form(message: str, names: Iterable[str]) -> str:
    """A Python-style hint rewritten for the command line.

    ``duplicates='keep_last', 'keep_first' or 'keep_all'`` becomes
    ``--duplicates=keep_last, keep_first or keep_all`` for each of `names` (flag names that
    are also option names).
    """
    for name in names:
        quoted = r"'[^']*'"
        pattern = rf"(?<![\w-]){re.escape(name)}=({quoted}(?:(?:, | or ){quoted})*)"
        message = re.sub(pattern, lambda m, n=name: f"--{n}=" + m.group(1).replace("'", ""), message)
    return message


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise `UsageError` (one line through `run_main`), not exit."""

    def error(self, message: str):  # noqa: D401  (argparse's hook)
        raise UsageError(f"{message} (see {self.prog} --help)")
