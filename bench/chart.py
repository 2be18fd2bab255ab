"""The ratios of bench/run.py as a bar chart (PNG), for the README.

matplotlib is optional (the `chart` dependency group): without it the chart
is skipped with one line saying so, and the table is all there is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Ratio:
    name: str
    baseline: str
    ratio: float  # ours / baseline: below 1 is faster than the baseline
    target: str  # "<= 0.8", "(info)", "<= 1 us" (an absolute bound, not a ratio)

    @property
    def target_ratio(self) -> float | None:
        match = re.fullmatch(r"<= ([0-9.]+)", self.target)
        return float(match.group(1)) if match else None


def draw_ratios(ratios: list[Ratio], path: str) -> bool:
    """Writes the chart to ``path``; False (and says why) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            f"chart skipped: matplotlib is missing ({path} not written); "
            "install it with: .venv/bin/pip install --group chart"
        )
        return False

    rows = list(reversed(ratios))  # matplotlib draws the first bar at the bottom
    figure, axes = plt.subplots(figsize=(10, 0.55 * len(rows) + 1.4), dpi=100)
    colours = []
    for row in rows:
        target = row.target_ratio
        if target is None:
            colours.append("#9e9e9e")
        elif row.ratio <= target:
            colours.append("#2e7d32")
        else:
            colours.append("#ef6c00")
    positions = range(len(rows))
    axes.barh(positions, [row.ratio for row in rows], color=colours, height=0.6)
    for position, row in zip(positions, rows, strict=True):
        label_at = row.ratio + 0.02
        target = row.target_ratio
        if target is not None and abs(target - row.ratio) < 0.1:
            label_at = max(row.ratio, target) + 0.02  # past the tick, which would hide it
        axes.text(label_at, position, f"{row.ratio:.2f}", va="center", fontsize=8)
        if row.target_ratio is not None:
            axes.plot([row.target_ratio] * 2, [position - 0.4, position + 0.4], color="black")
    axes.set_yticks(list(positions))
    axes.set_yticklabels([f"{row.name}\nvs {row.baseline}" for row in rows], fontsize=8)
    axes.axvline(1.0, color="#616161", linestyle="--", linewidth=1)
    axes.set_xlabel(
        "ormcache_redis / baseline: time per call or request (Odoo rows: also warm-up SQL "
        "left, memory)\nlower is better; dashed: equal; black tick: target"
    )
    axes.set_title(
        "make bench: ratios measured side by side "
        "(green: target met, orange: not, grey: no target)",
        fontsize=10,
    )
    axes.set_xlim(0, max(1.1, max(row.ratio for row in rows) * 1.15))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    print(f"chart: {path}")
    return True
