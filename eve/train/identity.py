"""What a training run is, so that `run.resume=auto` only ever continues the same run (issue 15).

A run is defined by its config minus the fields that only say how long it runs, where it writes and how fast it
loads data (`RUN_LENGTH_FIELDS`), the content of its manifest (rows and the sizes of the videos they name) and its
frozen weights (each local file's name, size and a hash of its ends: `weights_fingerprint`; a hub id as written).
`out_dir/run.json` holds the three hashes. A different identity in an `out_dir` that holds checkpoints is refused
before any weight loads, unless `run.resume` names a checkpoint folder: continuing from it on new data or settings
is then on purpose.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from eve.config import WEIGHT_FIELDS  # these count by content (weights_fingerprint), not by path
from eve.errors import EveError
from eve.models.lora import lora_fingerprint
from eve.utils.files import weights_fingerprint, write_text_atomic

logger = logging.getLogger(__name__)

# Fields that change how long a run goes, where it writes or how fast it loads, never what a step computes.
RUN_LENGTH_FIELDS = {"run": ("out_dir", "steps", "save_every", "keep_last", "log_every", "sample_every", "resume",
                             "eval_every", "validation"),  # validation reads the student, never changes a step
                     "data": ("workers", "manifest"),  # the manifest counts by content, not by path
                     "fdd": ("cache_dir",),  # where the teachers' samples are kept, not what they are
                     # how an edit is described when only an instruction is given: editing only, never training
                     "edit": ("task_from", "captioner", "writer", "llm_model", "llm_url", "llm_retries")}
FILE = "run.json"


def _digest(obj: object) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunIdentity:
    config: str
    manifest: str
    weights: str

    @classmethod
    def of(cls, cfg, rows: pd.DataFrame) -> "RunIdentity":
        c = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
        for section, names in RUN_LENGTH_FIELDS.items():
            for name in names:
                c[section].pop(name, None)
        weights = {name: (lora_fingerprint if name == "lora" else weights_fingerprint)(c["model"].pop(name, None))
                   for name in WEIGHT_FIELDS}
        videos = rows["video"] if "video" in rows else []  # LoRA alignment's rows have none
        sizes = [os.path.getsize(v) if os.path.isfile(v) else None for v in videos]
        manifest = [json.loads(rows.to_json(orient="records", default_handler=str)), sizes]
        return cls(config=_digest(c), manifest=_digest(manifest), weights=_digest(weights))

    def differences(self, other: "RunIdentity") -> list[str]:
        return [k for k, v in asdict(self).items() if asdict(other)[k] != v]

    def write(self, out: Path) -> None:
        write_text_atomic(out / FILE, json.dumps(asdict(self), indent=1))

    @classmethod
    def read(cls, out: Path) -> "RunIdentity | None":
        f = out / FILE
        if not f.is_file():
            return None
        try:
            return cls(**json.loads(f.read_text()))
        except (ValueError, TypeError) as e:
            raise EveError(f"{f} is not a run identity file ({e}); delete it only if this folder holds one run"
                           ) from None


def check_same_run(out: Path, identity: RunIdentity, *, resume: str, checkpoints: list[Path]) -> None:
    """Refuse to write into an out_dir whose checkpoints belong to another run, unless run.resume names a
    checkpoint folder (resuming on purpose). Called before any weight loads."""
    if not checkpoints:
        return
    if resume not in ("auto", "never"):
        logger.info("run.resume=%s: continuing from that checkpoint on purpose", resume)
        return
    if resume == "never":  # a fresh run among old checkpoints would be pruned by them, or resumed into them later
        raise EveError(f"run.resume=never, but run.out_dir={out} holds checkpoints ({checkpoints[-1].name}): start "
                       "fresh with a new run.out_dir=...")
    earlier = RunIdentity.read(out)
    what = "has no run.json (an older eve wrote it)" if earlier is None else \
        f"holds another run (changed: {', '.join(identity.differences(earlier))})" \
        if earlier != identity else None
    if what is None:
        return
    raise EveError(f"run.out_dir={out} {what}: start fresh with a new run.out_dir=..., or continue its newest "
                   f"checkpoint on purpose with run.resume={checkpoints[-1]}")
