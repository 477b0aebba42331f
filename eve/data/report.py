"""The end-of-run report: counts per stage, why clips were dropped, and score histograms as PNG images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def histogram_png(values, path: Path, title: str, threshold: float | None = None, bins: int = 30) -> Path:
    """A plain bar histogram (PIL only); a red line marks the threshold."""
    vals = np.asarray([v for v in values if v == v], dtype=float)
    W, H, pad = 480, 260, 36
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.text((pad, 8), f"{title} (n={len(vals)})", fill="black")
    if len(vals):
        lo, hi = float(vals.min()), float(vals.max())
        if threshold is not None:
            lo, hi = min(lo, threshold), max(hi, threshold)
        hi = hi if hi > lo else lo + 1e-6
        counts, edges = np.histogram(vals, bins=bins, range=(lo, hi))
        top = max(1, counts.max())
        bw = (W - 2 * pad) / bins
        for i, c in enumerate(counts):
            x0 = pad + i * bw
            d.rectangle([x0, H - pad - (H - 2 * pad - 20) * c / top, x0 + bw - 1, H - pad], fill=(70, 110, 180))
        d.line([pad, H - pad, W - pad, H - pad], fill="black")
        d.text((pad, H - pad + 6), f"{lo:.3g}", fill="black")
        d.text((W - pad - 40, H - pad + 6), f"{hi:.3g}", fill="black")
        if threshold is not None:
            x = pad + (threshold - lo) / (hi - lo) * (W - 2 * pad)
            d.line([x, 24, x, H - pad], fill="red", width=2)
            d.text((x + 3, 26), f"threshold {threshold:.3g}", fill="red")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def write_report(out: Path, counts: list[tuple[str, int]], drops: dict[str, int], figures: list[str],
                 notes: list[str], failed: list[tuple[str, str, str]] = ()) -> Path:
    """report/report.md: counts per stage, drop reasons, figures, notes, and every file or clip a stage failed on or
    dropped (stage, item, reason)."""
    lines = ["# Data preparation report", "", "| stage | count |", "|---|---:|"]
    lines += [f"| {name} | {n} |" for name, n in counts]
    lines += ["", "| dropped because | clips |", "|---|---:|"]
    lines += [f"| {reason} | {n} |" for reason, n in sorted(drops.items(), key=lambda kv: -kv[1]) if n] or ["| (none) | 0 |"]
    if failed:
        lines += ["", "| stage | failed or dropped | reason |", "|---|---|---|"]
        lines += [f"| {stage} | {item} | {reason.replace('|', '/')} |" for stage, item, reason in failed]
    lines += [""] + [f"![{Path(f).stem}]({Path(f).name})" for f in figures] + [""] + notes
    path = out / "report" / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
