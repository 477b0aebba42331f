"""`python -m eve.data --config configs/data/prepare.yaml [key=value ...]`: raw videos -> FDD manifest.
User errors print one line and exit 2; a re-run resumes where the last one stopped."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from eve.config import PrepConfig, load_config
    from eve.data.prepare import prepare
    from eve.errors import EveError
    from eve.utils.logging import setup_logging

    ap = argparse.ArgumentParser(prog="python -m eve.data", description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="YAML of PrepConfig fields (see configs/data/prepare.yaml)")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. input=videos/ out=runs/data")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        cfg = load_config(args.config, args.overrides, schema=PrepConfig)
        path = prepare(cfg)
    except EveError as e:
        print(f"eve.data: error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
