"""Edit a video with a text instruction. See `python edit.py --help`; the work is in eve.editing."""

import sys

from eve.editing.cli import main

if __name__ == "__main__":
    sys.exit(main())
