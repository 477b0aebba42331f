"""`python -m eve.data --config configs/data/prepare.yaml [key=value ...]`: raw videos -> FDD manifest.
User errors print one line and exit 2; a re-run resumes where the last one stopped."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from eve.config import PrepConfig, load_config
    from eve.data.prepare import prepare
    from eve.utils.cli import run_cli
    from eve.utils.logging import setup_logging

    ap = argparse.ArgumentParser(prog="python -m eve.data", description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="YAML of PrepConfig fields (see configs/data/prepare.yaml)")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. input=videos/ out=runs/data")
    args = ap.parse_args(argv)
    setup_logging()
    return run_cli("eve.data", lambda: print(prepare(load_config(args.config, args.overrides, schema=PrepConfig))),
                   "interrupted; run the same command again to resume")


if __name__ == "__main__":
    sys.exit(main())
