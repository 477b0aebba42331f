"""`python -m eve.eval`: edit a benchmark's videos with the methods asked for and score them as the paper's Table 1
does (PickScore, CLIPFrame, ViCLIP_dir, ViCLIP_out) and as newer benchmarks add (CLIP text-frame, DINO temporal
consistency, flow warp error, PSNR / LPIPS outside the edit's mask).

    python -m eve.eval --config configs/sd15/eve.yaml --edits /data/tgve --out runs/eval \\
        --methods eve:student=runs/fdd/ckpt-010000 pnp teacher sdedit source \\
        --clip openai/clip-vit-large-patch14 --pickscore yuvalkirstain/PickScore_v1 \\
        --pickscore-processor laion/CLIP-ViT-H-14-laion2B-s32B-b79K --video-text microsoft/xclip-base-patch32 \\
        --dino timm/vit_small_patch14_dinov2.lvd142m --raft raft_large.pth

--edits is eve's manifest or a TGVE / TGVE+ folder (eve/eval/edits.py). Every metric model is a local folder or a
hub id (RAFT and LPIPS's AlexNet: torchvision state-dict files); a metric whose model is not given is left out.
Re-running resumes: written videos and computed scores are kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eve.errors import EveError
from eve.utils.files import check_writable, write_text_atomic


def build_parser() -> argparse.ArgumentParser:
    from eve.utils.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m eve.eval", formatter_class=HelpFormatter,
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="eve YAML of the model (default: the committed shapes-world teachers)")
    ap.add_argument("--edits", required=True, help="eve manifest (csv/jsonl) or a TGVE / TGVE+ folder")
    ap.add_argument("--out", required=True, help="output folder (videos/, scores.jsonl, results.csv, table.md, grid.png)")
    ap.add_argument("--methods", nargs="+", default=["pnp", "teacher", "sdedit", "source"],
                    help="student=CKPT, pnp, teacher, sdedit, source; LABEL:student=CKPT to name a student")
    ap.add_argument("--limit", type=int, help="the first N edits only (a quick look; default: all)")
    ap.add_argument("--frames", type=int, default=32, help="frames per video (every F//N-th; 0: all)")
    ap.add_argument("--seed", type=int, default=0, help="noise seed (one per edit, the same for every method)")
    ap.add_argument("--sdedit-strength", type=float, default=0.6, help="SDEdit's noise level, a fraction of T")
    ap.add_argument("--clip", help="CLIP model for CLIPFrame and the text-frame score (e.g. "
                                   "openai/clip-vit-large-patch14)")
    ap.add_argument("--clip-pairs", default="consecutive", choices=["consecutive", "all"],
                    help="CLIPFrame over consecutive frames, or all pairs (TGVE's script)")
    ap.add_argument("--pickscore", help="PickScore weights (CLIPModel layout, e.g. yuvalkirstain/PickScore_v1)")
    ap.add_argument("--pickscore-processor", help="processor for --pickscore (default: the same folder)")
    ap.add_argument("--video-text", help="video-text model for ViCLIP_out / ViCLIP_dir: a transformers model with "
                                         "get_video_features (X-CLIP), or module:attr[=WEIGHTS] (ViCLIP)")
    ap.add_argument("--dino", help="timm DINO model for temporal consistency (a timm folder or hub id, e.g. "
                                   "timm/vit_small_patch14_dinov2.lvd142m)")
    ap.add_argument("--raft", help="torchvision RAFT state dict (.pth / .safetensors) for the warp error")
    ap.add_argument("--lpips", help="torchvision AlexNet state dict for LPIPS outside the mask")
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu", help="where the metric models run")
    ap.add_argument("--no-reference", action="store_true", help="leave the paper's printed rows out of the table")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. edit.steps=4")
    return ap


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def check_models(args) -> None:
    """Every metric reference exists or looks like a hub id, before anything loads."""
    from eve.eval.scorers import is_entry_point
    from eve.models.loading import resolve

    for name in ("clip", "pickscore", "pickscore_processor", "dino"):
        ref = getattr(args, name)
        if ref:
            resolve(ref, f"--{name.replace('_', '-')}")
    if args.video_text and not is_entry_point(args.video_text):
        resolve(args.video_text, "--video-text")
    for name in ("raft", "lpips"):
        ref = getattr(args, name)
        if ref and not Path(ref).is_file():
            raise EveError(f"--{name} {ref} is not a file")


def load_scorers(args):
    from eve.eval.run import Scorers
    from eve.eval.scorers import ClipScorer, DinoScorer, FlowScorer, lpips_net, video_text_scorer

    s = Scorers(clip_pairs=args.clip_pairs)
    if args.clip:
        s.clip = ClipScorer(args.clip, "--clip", device=args.device)
    if args.pickscore:
        s.pickscore = ClipScorer(args.pickscore, "--pickscore", args.pickscore_processor, device=args.device)
    if args.video_text:
        s.video_text = video_text_scorer(args.video_text, "--video-text", args.device)
    if args.dino:
        s.dino = DinoScorer(args.dino, "--dino", device=args.device)
    if args.raft:
        s.flow = FlowScorer(args.raft, "--raft", device=args.device)
    if args.lpips:
        s.lpips = lpips_net(args.lpips, "--lpips", device=args.device)
    s.ids = {k: v for k, v in (("clip", args.clip), ("clip_pairs", args.clip_pairs if args.clip else None),
                               ("pickscore", args.pickscore), ("pickscore_processor", args.pickscore_processor),
                               ("video_text", args.video_text), ("dino", args.dino), ("raft", args.raft),
                               ("lpips", args.lpips)) if v}
    return s


def main(argv: list[str] | None = None) -> int:
    from eve.utils.cli import run_cli
    from eve.utils.logging import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging()

    def body() -> None:
        import logging

        from eve.config import load_config
        from eve.eval.edits import read_edits

        if args.frames < 0 or not 0 < args.sdedit_strength <= 1:
            raise EveError(f"--frames must be >= 0 and --sdedit-strength in (0, 1], got {args.frames}, "
                           f"{args.sdedit_strength}")
        if args.limit is not None and args.limit < 1:
            raise EveError(f"--limit must be >= 1, got {args.limit}")
        edits = read_edits(args.edits).head(args.limit)  # a wrong path answers before the slow imports below
        from eve.config import DEFAULT_CONFIG
        from eve.eval.run import (check_resume, edit_all, parse_methods, record, score_all, settings, tables,
                                  write_grid)
        from eve.models.lora import inspect_lora

        methods = parse_methods(args.methods)
        for m in methods:
            if m.checkpoint:
                inspect_lora(m.checkpoint)
        check_models(args)
        cfg = load_config(args.config or DEFAULT_CONFIG, args.overrides)
        out = Path(args.out)
        check_writable(out, "--out")
        frames = args.frames or None
        made = {m.label: settings(cfg, m, frames=frames, seed=args.seed, sdedit_strength=args.sdedit_strength)
                for m in methods}
        check_resume(out, edits, made)  # a re-run that would mix settings stops here, not after hours of work
        scorers = load_scorers(args)  # a wrong metric model fails here, before any editing
        out.mkdir(parents=True, exist_ok=True)
        record(out, edits, made)
        logging.getLogger("eve.eval").info("%d edits x %d methods -> %s", len(edits), len(methods), out)
        edit_all(cfg, edits, methods, out, frames=frames, seed=args.seed, sdedit_strength=args.sdedit_strength)
        scores = score_all(edits, methods, out, scorers, frames=frames, made=made)
        write_text_atomic(out / "results.csv", scores.to_csv(index=False))
        text, overall = tables(scores, models=scorers.ids, seed=args.seed, frames=frames,
                               reference=not args.no_reference and Path(args.edits).is_dir())
        write_text_atomic(out / "table.md", text)
        write_text_atomic(out / "table.csv", overall.to_csv(index_label="method"))
        write_grid(out / "grid.png", edits, methods, out)
        print(text)

    return run_cli("eve.eval", body)


if __name__ == "__main__":
    sys.exit(main())
