"""The stage runner: each stage maps rows of one manifest to rows of the next, journaled item by item.

A stage appends each finished item to journal/<stage>.jsonl (flushed), so a run killed mid-stage keeps every item
already done; once all items are done it writes <stage>.parquet atomically. A re-run skips a stage whose parquet
was written from the same input and settings (recorded next to it), and skips journaled items otherwise.

An item whose work raises (a damaged file: FFmpeg, OpenCV and numpy raise many error types) fails alone: it gives
no rows, its reason is journaled and kept in `Stage.failures` (item id -> reason), and the stage goes on; a re-run
tries failed items again (their cause may have been fixed), so only a stage without failures is skipped whole. An
EveError, ImportError or out-of-memory (the setup, not one file) still stops the run.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from tqdm.auto import tqdm

from eve.data.manifest import write_table
from eve.errors import BadInput, EveError
from eve.utils.files import write_text_atomic


def fingerprint(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Stage:
    def __init__(self, out: Path, name: str, settings: dict):
        self.out, self.name, self.settings = out, name, settings
        self.parquet = out / f"{name}.parquet"
        self.journal = out / "journal" / f"{name}.jsonl"
        self.meta = out / "journal" / f"{name}.json"
        self.failures: dict[str, str] = {}

    def key(self, inputs: pd.DataFrame) -> str:
        return fingerprint(self.name, self.settings, pd.util.hash_pandas_object(inputs.astype(str), index=False).sum())

    def run(self, inputs: pd.DataFrame, item_id: Callable[[dict], str], work: Callable[[dict], list[dict]],
            workers: int = 1) -> pd.DataFrame:
        """rows_out = concat(work(row) for row in inputs), journaled by item_id(row)."""
        key = self.key(inputs)
        meta = json.loads(self.meta.read_text()) if self.meta.is_file() else {}
        if self.parquet.is_file() and meta.get("key") == key and not meta.get("failures"):
            return pd.read_parquet(self.parquet)
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        done: dict[str, list[dict]] = {}
        if self.journal.is_file():
            lines = self.journal.read_text().splitlines()
            if lines and json.loads(lines[0]).get("key") == key:
                for line in lines[1:]:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:  # a line cut by a kill
                        continue
                    if rec.get("error"):  # failed items are tried again: the cause may have been fixed
                        continue
                    done[rec["id"]] = rec["rows"]
        with open(self.journal, "w") as f:  # rewrite: header + what is kept
            f.write(json.dumps({"key": key}) + "\n")
            for i, rows in done.items():
                f.write(json.dumps({"id": i, "rows": rows}, default=str) + "\n")
        records = inputs.to_dict("records")
        todo = [r for r in records if item_id(r) not in done]

        def one(r):
            try:
                return item_id(r), work(r), None
            except BadInput as e:  # a file that cannot be read: its own item fails, with the file named
                return item_id(r), [], str(e)
            except (EveError, ImportError, MemoryError, torch.OutOfMemoryError):
                raise  # the setup, not one file: every item would fail the same way
            except Exception as e:  # one damaged file fails its own item, never the run
                return item_id(r), [], f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"

        with (open(self.journal, "a") as f,
              tqdm(total=len(records), initial=len(records) - len(todo), desc=self.name) as bar,
              ThreadPoolExecutor(max(1, workers)) as pool):  # shut down with the stage, not left to the interpreter
            results = pool.map(one, todo) if workers > 1 else map(one, todo)
            for i, rows, error in results:
                done[i] = rows
                if error:
                    self.failures[i] = error
                f.write(json.dumps({"id": i, "rows": rows, "error": error}, default=str) + "\n")
                f.flush()
                bar.update()
        out = pd.DataFrame([row for r in records for row in done[item_id(r)]])
        write_table(out, self.parquet)
        write_text_atomic(self.meta, json.dumps({"key": key, "rows": len(out), "failures": self.failures}))
        return out
