"""python -m eve.worlds.shapes {train-teachers,data} ... (see --help); the benchmark is bench/world/shapes.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eve.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    from eve.utils.cli import HelpFormatter, run_cli

    ap = argparse.ArgumentParser(
        prog="python -m eve.worlds.shapes", formatter_class=HelpFormatter,
        description="The shapes world (docs/proving-ground.md): train its teachers, or write its FDD dataset, or\n"
                    "LoRA alignment's style images and captions (style-data).\n"
                    "train-teachers stages, in order: autoencoder, backbone, controlnet (edit adapter), video (motion\n"
                    "adapter + first-frame input), features (the critic's feature net); an interrupted run resumes.\n"
                    "Its benchmarks: bench/world/gates.py (the premises), bench/world/shapes.py (every method).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train-teachers", help="train the backbone, edit adapter, video adapter and feature net",
                       formatter_class=HelpFormatter)
    t.add_argument("--out", default="runs/shapes/teachers", help="the committed set is data/shapes/teachers")
    t.add_argument("--scale", type=float, default=1.0, help="multiply every stage's step count (smoke runs: 0.001)")
    t.add_argument("--seed", type=int, default=0, help="training seed")
    t.add_argument("--only", choices=["autoencoder", "backbone", "controlnet", "video", "features"],
                   help="one stage (its inputs must exist): the adapters can train in parallel processes")
    t.add_argument("--init", help="an earlier teachers folder: continue each stage from its weights")
    t.add_argument("--steps", type=int, help="with --only: that stage's step count")
    t.add_argument("--prediction", choices=["v_prediction", "epsilon"],
                   help="the backbone's parametrisation (the adapters follow it): v_prediction (default) with\n"
                        "zero-terminal SNR, or SD-1.5's epsilon on a schedule whose terminal SNR is not zero")
    d = sub.add_parser("data", help="write the FDD dataset (source clips + 7 instructions each, no edited video)",
                       formatter_class=HelpFormatter)
    d.add_argument("--out", default="runs/shapes/fdd", help="the committed set is data/shapes/fdd")
    d.add_argument("--clips", type=int, default=100, help="source clips (7 manifest rows each)")
    d.add_argument("--seed", type=int, default=0, help="scene sampling seed")
    st = sub.add_parser("style-data", help="LoRA alignment's world data: style images (for eve.train.dreambooth) and "
                        "a captions-only manifest (for train_fdd.py fdd.mode=lora_align)", formatter_class=HelpFormatter)
    st.add_argument("--out", default="runs/shapes/style", help="writes OUT/images/ and OUT/data/manifest.jsonl")
    st.add_argument("--images", type=int, default=16, help="style images (the few a DreamBooth-style LoRA learns from)")
    st.add_argument("--scenes", type=int, default=60, help="training-side source scenes (5 edits each)")
    st.add_argument("--seed", type=int, default=0, help="scene sampling seed")
    args = ap.parse_args(argv)
    setup_logging()
    if args.cmd == "style-data":
        from eve.worlds.shapes.lora_align import write_manifest, write_style_images

        print(write_style_images(Path(args.out) / "images", args.images, args.seed))
        print(write_manifest(Path(args.out) / "data", args.scenes, args.seed))
    elif args.cmd == "data":
        from eve.worlds.shapes.data import write_fdd_dataset

        print(write_fdd_dataset(args.out, num_clips=args.clips, seed=args.seed))
    elif args.cmd == "train-teachers":
        from eve.worlds.shapes.teachers import train_teachers

        if args.steps is not None and (args.only is None or args.steps < 1):
            ap.error(f"--steps needs --only and a positive count, got --steps {args.steps} --only {args.only}")
        if args.init is not None and not (Path(args.init) / "sd").is_dir():
            ap.error(f"--init: {args.init} is not a teachers folder (no sd/ in it)")
        return run_cli("python -m eve.worlds.shapes train-teachers", lambda: print(train_teachers(
            args.out, scale=args.scale, seed=args.seed, only=args.only, init=args.init, steps=args.steps,
            prediction=args.prediction)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
