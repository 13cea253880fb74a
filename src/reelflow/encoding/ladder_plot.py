"""ladder.png: trial points, each resolution's title hull, the chosen rungs and the fixed ladder.

One picture that shows a person what the per-title ladder saves: the chosen rungs sit on the
upper envelope of the hulls, and the fixed ladder's delivered points sit below and to the right.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reelflow.encoding.hull import ShotPoints, at_height, per_title_hull, title_hull
from reelflow.encoding.ladder import PlannedRung

# Points of the fixed ladder, delivered or predicted from the trials: (kbps, vmaf, label).
FixedPoint = tuple[float, float, str]


def plot_ladder(
    out: Path,
    shots: Sequence[ShotPoints],
    rungs: Sequence[PlannedRung],
    *,
    mode: str = "per-shot",
    fixed: Sequence[FixedPoint] = (),
    delivered: Sequence[tuple[float, float]] = (),
    fixed_label: str = "fixed ladder (delivered)",
    title: str = "",
) -> Path:
    """Draw the ladder report's picture into ``out`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=100)
    # trial points, duration-weighted over the title per (height, crf), so they share the hulls' scale
    heights = sorted({p.height for s in shots for p in s.points})
    cmap = plt.get_cmap("viridis")
    colours = [cmap(i / max(1, len(heights) - 1)) for i in range(len(heights))]
    hull_of = title_hull if mode == "per-shot" else per_title_hull
    for height, colour in zip(heights, colours, strict=True):
        at = at_height(shots, height)
        hull = hull_of(at)
        ax.plot(hull.kbps, hull.vmaf, "-", color=colour, lw=1.6, label=f"{height}p hull ({mode})")
        grid = _title_points(at)
        ax.scatter([k for k, _ in grid], [v for _, v in grid], s=10, color=colour, alpha=0.45)
    if fixed:
        ax.plot([k for k, _, _ in fixed], [v for _, v, _ in fixed], "s--", color="0.45", ms=5,
                label=fixed_label)
    ax.scatter([r.kbps for r in rungs], [r.vmaf for r in rungs], s=90, marker="o", facecolors="none",
               edgecolors="crimson", linewidths=2, zorder=5, label="chosen rungs (planned)")
    for rung in rungs:
        ax.annotate(f"{rung.height}p {rung.kbps:.0f}k", (rung.kbps, rung.vmaf), textcoords="offset points",
                    xytext=(6, -12), fontsize=8, color="crimson")
    if delivered:
        ax.scatter([k for k, _ in delivered], [v for _, v in delivered], s=30, marker="x", color="crimson",
                   zorder=6, label="chosen rungs (delivered)")
    ax.axhspan(93, 95, color="gold", alpha=0.15, label="top rung target (VMAF 93-95)")
    ax.set_xscale("log")
    ax.set_xlabel("bitrate, kbit/s (log)")
    ax.set_ylabel("VMAF (duration-weighted, display size)")
    ax.set_ylim(bottom=max(0.0, min([v for s in shots for v in (p.vmaf for p in s.points)] + [100.0]) - 5),
                top=100)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or f"ladder ({mode})")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _title_points(shots: Sequence[ShotPoints]) -> list[tuple[float, float]]:
    """Per CRF at one height: the title's duration-weighted (kbps, vmaf), where every shot has it."""
    total = sum(s.duration_s for s in shots)
    crfs = set.intersection(*({p.crf for p in s.points} for s in shots)) if shots else set()
    out = []
    for crf in sorted(crfs):
        chosen = [next(p for p in s.points if p.crf == crf) for s in shots]
        out.append((sum(p.kbps * s.duration_s for p, s in zip(chosen, shots, strict=True)) / total,
                    sum(p.vmaf * s.duration_s for p, s in zip(chosen, shots, strict=True)) / total))
    return out
