"""`python -m eve.data.triplets`: LoRA alignment's data (paper §4.4), captions only, no images.

From a list of input captions, an instruction writer (template | transformers | openai | module:attr, the same
writers as the video data stage) writes (input caption, instruction, output caption, task) triplets:

* stylised editing (default): one edit per task, the seven tasks, as for video data (`write_instructions`);
  `--tasks` keeps some (style and global edits restyle the whole image, so they compete with a style LoRA: the
  shapes world keeps add, remove, background, texture and local);
* personalised editing (`--subject "sks toy"`): instructions that add the subject or replace an item with it
  (`write_subject_edits`), the subject named in each instruction and output caption.

Writes OUT/manifest.jsonl and OUT/manifest.csv (columns input_caption, instruction, caption, task, id), and
OUT/rejects.jsonl (captions whose replies were all rejected, with the reasons). Journalled caption by caption: a
killed run resumes, a re-run does no work again. train_fdd.py samples each input image from its input caption with
the user's LoRA.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd

from eve.errors import EveError
from eve.utils.files import check_writable

logger = logging.getLogger("eve.triplets")


def read_captions(path: str | Path) -> list[str]:
    """Input captions from a .txt (one per line) or a csv/jsonl/parquet with a `caption` column; unique, in order."""
    from eve.data.manifest import read_table

    p = Path(path)
    if not p.is_file():
        raise EveError(f"captions file not found: {p}")
    if p.suffix == ".txt":
        captions = [line.strip() for line in p.read_text().splitlines()]
    else:
        df = read_table(p)
        if "caption" not in df.columns:
            raise EveError(f"captions file {p} has no column 'caption' (has: {', '.join(map(str, df.columns))})")
        captions = [str(c).strip() for c in df["caption"]]
    captions = list(dict.fromkeys(c for c in captions if c))
    if not captions:
        raise EveError(f"captions file {p} holds no captions")
    return captions


def write_triplets(captions: list[str], out: str | Path, writer, *, subject: str | None = None, retries: int = 3,
                   tasks: list[str] | None = None, settings: dict | None = None) -> pd.DataFrame:
    """The manifest rows, written to OUT/manifest.jsonl and .csv (and rejected captions to OUT/rejects.jsonl); `tasks`:
    the stylised edits kept (default: all)."""
    from eve.data.instructions import write_instructions, write_subject_edits
    from eve.data.manifest import write_table
    from eve.data.stages import Stage, fingerprint

    out = Path(out)
    check_writable(out, "--out")

    def work(row: dict) -> list[dict]:
        caption = row["caption"]
        if subject is None:
            edits, reasons = write_instructions(writer, caption, retries)
        else:
            edits, reasons = write_subject_edits(writer, caption, subject, retries)
        if edits is None:
            return [{"input_caption": caption, "rejected": "; ".join(reasons)}]
        edits = [e for e in edits if tasks is None or e["task"] in tasks]
        cid = fingerprint(caption)[:10]
        return [{"input_caption": caption, "instruction": e["instruction"], "caption": e["output_caption"],
                 "task": e["task"], "id": f"{cid}-{e['task']}-{j}"} for j, e in enumerate(edits)]

    stage = Stage(out, "triplets", {"subject": subject, "retries": retries, "tasks": tasks, **(settings or {})})
    rows = stage.run(pd.DataFrame({"caption": captions}), lambda r: fingerprint(r["caption"]), work)
    rejected = rows[rows["rejected"].notna()] if "rejected" in rows else rows.iloc[:0]
    kept = rows.drop(index=rejected.index).drop(columns=["rejected"], errors="ignore")
    with open(out / ".rejects.jsonl.tmp", "w") as fh:
        for r in rejected.to_dict("records"):
            fh.write(json.dumps({"caption": r["input_caption"], "reasons": r["rejected"]}) + "\n")
    (out / ".rejects.jsonl.tmp").replace(out / "rejects.jsonl")
    if kept.empty:
        raise EveError(f"every caption's replies were rejected ({len(rejected)} captions; reasons in "
                       f"{out / 'rejects.jsonl'}): no triplets written")
    kept = kept[["input_caption", "instruction", "caption", "task", "id"]].reset_index(drop=True)
    for name in ("manifest.jsonl", "manifest.csv"):
        write_table(kept, out / name)
    logger.info("%d triplets from %d captions (%d rejected) -> %s", len(kept), len(captions), len(rejected),
                out / "manifest.jsonl")
    return kept


def main(argv: list[str] | None = None) -> int:
    from eve.data.instructions import check_writer, make_writer
    from eve.tasks import task_id
    from eve.utils.cli import HelpFormatter, run_cli
    from eve.utils.logging import setup_logging

    ap = argparse.ArgumentParser(prog="python -m eve.data.triplets", formatter_class=HelpFormatter,
                                 description="\n\n".join(__doc__.split("\n\n")[:3]))
    ap.add_argument("--captions", required=True, help="input captions: .txt (one per line) or csv/jsonl/parquet "
                                                      "with a caption column")
    ap.add_argument("--out", required=True, help="output folder (manifest.jsonl, manifest.csv, rejects.jsonl)")
    ap.add_argument("--subject", help='personalised editing: the subject\'s token phrase, e.g. "sks toy" (default: '
                                      "stylised editing, the seven tasks)")
    ap.add_argument("--writer", default="template", help="template | transformers | openai | module:attr")
    ap.add_argument("--llm-model", help="local chat model folder, or the model name on an OpenAI-compatible server")
    ap.add_argument("--llm-url", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    ap.add_argument("--tasks", help="stylised editing: the tasks kept, comma-separated, e.g. "
                                    "add,remove,background,texture,local (default: all seven)")
    ap.add_argument("--retries", type=int, default=3, help="retries of a rejected reply")
    ap.add_argument("--seed", type=int, default=0, help="template writer seed")
    args = ap.parse_args(argv)
    setup_logging()

    def body() -> None:
        if args.subject is not None and not args.subject.strip():
            raise EveError("--subject is empty")
        tasks = None
        if args.tasks is not None:
            if args.subject is not None:
                raise EveError("--tasks chooses stylised edits; with --subject every edit adds or replaces the subject")
            tasks = [t.strip().lower() for t in args.tasks.split(",") if t.strip()]
            for t in tasks:
                task_id(t)  # an unknown task is one line naming it
        needs = "__call__" if args.subject is None else "subject"
        check_writer(args.writer, llm_model=args.llm_model, llm_url=args.llm_url, field="--writer", needs=needs)
        captions = read_captions(args.captions)
        writer = make_writer(args.writer, llm_model=args.llm_model, llm_url=args.llm_url, seed=args.seed,
                             field="--writer", needs=needs)
        write_triplets(captions, args.out, writer, subject=args.subject, retries=args.retries, tasks=tasks,
                       settings={"writer": args.writer, "llm_model": args.llm_model, "seed": args.seed})

    return run_cli("eve.data.triplets", body)


if __name__ == "__main__":
    sys.exit(main())
