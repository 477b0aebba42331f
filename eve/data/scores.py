"""Stage 3, score and filter: motion (optical flow), text overlays (OCR), and optional CLIP text-frame and
aesthetic scores when the user supplies weights. Thresholds are absolute or quantiles ("q0.2")."""

from __future__ import annotations

import threading

import numpy as np

from eve.errors import EveError


def motion_score(frames: np.ndarray, pairs: int = 4, width: int = 128) -> float:
    """Mean Farneback optical-flow magnitude (pixels per frame at `width` px wide) over evenly spaced frame pairs."""
    import cv2

    n = len(frames)
    if n < 2:
        return 0.0
    idx = np.linspace(0, n - 2, min(pairs, n - 1)).round().astype(int)
    mags = []
    for i in idx:
        a, b = (cv2.cvtColor(frames[j], cv2.COLOR_RGB2GRAY) for j in (i, i + 1))
        h = max(8, round(a.shape[0] * width / a.shape[1]))
        a, b = cv2.resize(a, (width, h)), cv2.resize(b, (width, h))
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        mags.append(float(np.linalg.norm(flow, axis=-1).mean()))
    return float(np.mean(mags))


_OCR: dict[int, object] = {}  # one RapidOCR per detector side
_OCR_LOCK = threading.Lock()  # the score stage's worker threads build it once


def text_area(frames: np.ndarray, *, side: int, samples: int = 3, min_score: float = 0.8, min_chars: int = 3) -> float:
    """Largest fraction of frame area covered by RapidOCR text boxes over a few frames (weights ship in the wheel).

    Only boxes whose recognised text is confident (>= min_score) and has >= min_chars letters or digits count:
    the detector alone fires on busy textures. `side` (PrepConfig.text_side): the detector's input, a frame whose
    short side is below it is upscaled to it and a larger one read as it is. The data stage scores frames 256 px wide
    (a 16:9 frame's short side is 144): RapidOCR's own 736, meant for document photos, would run the detector on 26x
    their pixels for the same overlays, boxed a little looser (tests/test_data_prep.py: at 384 the test corpus's
    overlay covers 0.80-0.90 of the area it covers at 736)."""
    import cv2

    with _OCR_LOCK:
        if side not in _OCR:
            import logging

            from rapidocr import RapidOCR

            from eve.utils.threads import ocr_options

            _OCR[side] = RapidOCR(params={**ocr_options(), "Det.limit_type": "min", "Det.limit_side_len": side})
            logging.getLogger("RapidOCR").disabled = True  # per-frame INFO/WARNING lines
        ocr = _OCR[side]
    worst = 0.0
    for i in np.linspace(0, len(frames) - 1, min(samples, len(frames))).round().astype(int):
        img = cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR)
        res = ocr(img)
        if res.boxes is None:
            continue
        area = sum(cv2.contourArea(np.asarray(b, np.float32)) for b, txt, sc in zip(res.boxes, res.txts, res.scores)
                   if sc >= min_score and sum(ch.isalnum() for ch in txt) >= min_chars)
        worst = max(worst, area / (img.shape[0] * img.shape[1]))
    return worst


def resolve_threshold(spec: str | None, values, field: str) -> float | None:
    """"0.3" -> 0.3; "q0.2" -> the 0.2 quantile of `values`; None -> no threshold."""
    if spec is None or str(spec).strip() == "":
        return None
    s = str(spec).strip()
    try:
        if s.startswith("q"):
            q = float(s[1:])
            if not 0 <= q <= 1:
                raise ValueError
            vals = np.asarray([v for v in values if v == v], dtype=float)
            return float(np.quantile(vals, q)) if len(vals) else None
        return float(s)
    except ValueError:
        raise EveError(f"{field}={spec!r}: expected a number or qX with 0 <= X <= 1") from None


class ClipScorer:
    """CLIP text-frame similarity and an aesthetic linear head over CLIP image embeddings, from local weights."""

    def __init__(self, model_dir: str, aesthetic_head: str | None = None):
        import torch
        from transformers import CLIPModel, CLIPProcessor

        try:
            self.model = CLIPModel.from_pretrained(model_dir, local_files_only=True).eval()
            self.proc = CLIPProcessor.from_pretrained(model_dir, local_files_only=True)
        except (OSError, ValueError) as e:
            raise EveError(f"cannot load clip_model {model_dir}: {str(e).splitlines()[0]}") from None
        self.head = None
        if aesthetic_head:
            from safetensors.torch import load_file

            w = load_file(aesthetic_head)
            self.head = torch.nn.Linear(w["weight"].shape[1], 1)
            self.head.load_state_dict(w)
        self.torch = torch

    def __call__(self, frame: np.ndarray, caption: str | None) -> tuple[float | None, float | None]:
        torch = self.torch
        with torch.no_grad():
            inputs = self.proc(images=[frame], text=[caption or ""], return_tensors="pt", padding=True)
            out = self.model(**inputs)
            img = torch.nn.functional.normalize(out.image_embeds, dim=-1)
            txt = torch.nn.functional.normalize(out.text_embeds, dim=-1)
            sim = float((img * txt).sum()) if caption else None
            aes = float(self.head(out.image_embeds)[0, 0]) if self.head is not None else None
        return sim, aes
