"""What every entry point does with errors: a user error (EveError) is one line on stderr and exit code 2, an
interrupt is exit code 130 with a note; anything else is a bug and keeps its traceback."""

from __future__ import annotations

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
    return 0
