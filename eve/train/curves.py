"""curves.png: a run's validation scores and its discriminators' logits against the step, from metrics.jsonl."""

from __future__ import annotations

import json
import os
from pathlib import Path


def plot_curves(metrics: str | Path, out: str | Path) -> Path:
    """A panel per validation score (val_*: each its own scale), one of the critic's mean real and fake logits
    (when it trained), one of the generator's terms; written to a temporary name and renamed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(metrics).read_text().splitlines() if line.strip()]
    panels = [(f"validation: {k[4:]}", [k]) for k in sorted({k for r in rows for k in r if k.startswith("val_")})]
    panels += [("critic logits", sorted({k for r in rows for k in r if k.startswith("logit_")})),
              ("generator terms", sorted({k for r in rows for k in r
                                          if k.startswith(("sds_", "g_", "fake_")) and k != "g_student"}))]
    panels = [(title, keys) for title, keys in panels if keys]
    cols = min(4, max(1, len(panels)))
    rows_ = -(-max(1, len(panels)) // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4.2 * cols, 3.2 * rows_), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (title, keys) in zip(axes.flat, panels):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o" if title.startswith("validation") else None, ms=3, lw=1, label=k)
        if len(keys) > 1:
            ax.legend(fontsize=7)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)
    return out
