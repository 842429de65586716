"""``--plot out.png``: decode speedup per model and arm (needs the ``plot`` extra)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from llamasc.bench.stats import ArmRow
from llamasc.errors import ConfigError


def plot_speedup(rows: Sequence[ArmRow], out: Path) -> Path:
    """Draw a grouped bar chart of speedups (baseline = 1.0) and save it to ``out``."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError(
            "--plot needs matplotlib: pip install matplotlib (the llamasc 'plot' extra)"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if r.speedup is not None and r.arm != r.baseline]
    if not measured:
        raise ConfigError("nothing to plot: no arm has a speedup over a measured baseline")
    models = list(dict.fromkeys(r.model for r in measured))
    arms = list(dict.fromkeys(r.arm for r in measured))
    width = 0.8 / len(arms)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(models) + 2), 4.0))
    for i, arm in enumerate(arms):
        xs, ys = [], []
        for j, model in enumerate(models):
            row = next((r for r in measured if r.model == model and r.arm == arm), None)
            if row is not None and row.speedup is not None:
                xs.append(j + i * width - 0.4 + width / 2)
                ys.append(row.speedup)
        ax.bar(xs, ys, width=width, label=arm)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(models)), models, rotation=20, ha="right")
    ax.set_ylabel("decode speedup vs baseline (x)")
    ax.set_title("Speculative decoding speedup per model")
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


__all__ = ["plot_speedup"]
