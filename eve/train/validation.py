"""Validation inside training (run.eval_every, run.validation) and the checkpoint it chooses.

A validation hook is "module:attr" naming a callable (cfg, model) -> scorer, and scorer(model) -> {metric: float}
scores the student as the model holds it now (its LoRA on, in the student role). It is built once, so it can fix its
clips and anything that does not depend on the student (the first frames' edits) up front. Any world or dataset with
a scorer can give one; the shapes world's is eve.worlds.shapes.validation:scorer. The loop logs the scores as val_*
fields of metrics.jsonl, and `best_checkpoint` picks a run's checkpoint by them: settings and checkpoints are chosen
on validation clips, never on a test set.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Callable

from eve.errors import EveError

Scorer = Callable[[object], dict]


def resolve(spec: str, field: str = "run.validation"):
    """"module:attr" -> the attribute, or one EveError line naming the field and the value."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise EveError(f"{field}={spec!r} must look like module:attr")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise EveError(f"{field}={spec!r} cannot be loaded: {e}") from None


def load_scorer(cfg, model) -> Scorer:
    """The run's validation scorer (run.validation), built for this model."""
    if not cfg.run.validation:
        raise EveError(f"run.eval_every={cfg.run.eval_every} asks for validation, but run.validation names no scorer "
                       "(module:attr; the shapes world's: eve.worlds.shapes.validation:scorer)")
    return resolve(cfg.run.validation)(cfg, model)


def validation_rows(run_dir: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl that carry validation scores."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise EveError(f"{path} does not exist: not a training run folder")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if any(k.startswith("val_") for k in r)]


def chosen_checkpoint(path: str | Path) -> tuple[Path, dict | None]:
    """A checkpoint as given (no validation row), or for a run folder (it holds metrics.jsonl) its best-validated
    checkpoint and that checkpoint's validation row: what `python -m eve.export` and the benches take."""
    if (Path(path) / "metrics.jsonl").is_file():
        return best_checkpoint(path)
    return Path(path), None


def best_checkpoint(run_dir: str | Path, metric: str = "val_combined") -> tuple[Path, dict]:
    """(checkpoint folder, its validation row) with the highest `metric` among the run's checkpoints that were
    validated (ties: the earlier step). A run validated at its save steps has one row per checkpoint."""
    run_dir = Path(run_dir)
    rows = {r["step"]: r for r in validation_rows(run_dir) if isinstance(r.get(metric), (int, float))
            and math.isfinite(r[metric])}
    saved = {int(p.name.split("-")[1]): p for p in run_dir.glob("ckpt-*") if p.is_dir() and p.name[5:].isdigit()}
    both = sorted(set(rows) & set(saved))
    if not both:
        raise EveError(f"{run_dir}: no checkpoint has a {metric} score (train with run.eval_every equal to, or a "
                       "divisor of, run.save_every and run.validation set)")
    step = max(both, key=lambda s: (rows[s][metric], -s))
    return saved[step], rows[step]
