"""What every entry point does with errors: a user error (EveError) is one line on stderr and exit code 2, an
interrupt is exit code 130 with a note; a full disk or read-only file system is one line too (exit 2); anything else
is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import sys
from typing import Callable

from eve.errors import EveError


def run_cli(prog: str, body: Callable[[], None], interrupted: str = "interrupted") -> int:
    try:
        body()
    except EveError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"{prog}: error: {e.strerror or e}{where} (what was written before is kept; run again once it can be "
              "written)", file=sys.stderr)
        return 2
    return 0


# the disk, not the program: a full disk or quota, a read-only file system
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def config_help(schema: type, keys: dict[str, str], title: str = "main key=value options") -> str:
    """An --help epilog: each (dotted) config key with its default, read from the schema, and what it does."""
    def default(cls, dotted: str):
        head, _, rest = dotted.partition(".")
        f = next(f for f in dataclasses.fields(cls) if f.name == head)
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        return default(type(value), rest) if rest else value

    width = max(map(len, keys))
    lines = [f"  {key:<{width}}  {text} (default: {default(schema, key)})" for key, text in keys.items()]
    return f"{title}:\n" + "\n".join(lines)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's and epilog's line breaks and shows every option's default (none shown for None)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)
