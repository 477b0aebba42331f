"""Distil an EVE editor with Factorized Diffusion Distillation. See `python train_fdd.py --help`; the work is in
eve.train. Multi-GPU: `accelerate launch train_fdd.py --config ...`."""

import sys

from eve.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
