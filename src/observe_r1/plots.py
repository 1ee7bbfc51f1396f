"""PNG plots of a run's ``metrics.jsonl``: rewards, accuracy, length, dynamic weight, curriculum, pace, sampling."""

from __future__ import annotations

from pathlib import Path

from observe_r1.jsonl import read_jsonl

PANELS = {
    "rewards": ["reward", "accuracy", "format_rate", "bonus_rate"],
    "length": ["completions/mean_length", "length_correct", "length_incorrect"],
    "weight": ["dyna_weight_mean"],
    "curriculum": ["curriculum_difficulty", "curriculum_position"],
    "pace": ["pace_window_pass_rate", "pace_level"],  # curriculum: paced
    "pace_skipped": ["pace_skipped_total"],
    "pace_memory": ["pace_mastered_levels", "pace_rechecks"],  # levels left out of the next epoch, memory resets
    "sampling": ["zero_std_generated", "zero_std_trained", "generation_rounds"],
}


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend (no display needed): the one place every plot starts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(metrics_path: str | Path, out_dir: str | Path) -> list[Path]:
    """One PNG per panel in ``out_dir`` (metrics absent from the log are left out); returns the files written."""
    plt = pyplot()
    rows = read_jsonl(metrics_path, missing_ok=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for panel, keys in PANELS.items():
        series = {k: [(r["step"], r[k]) for r in rows if k in r] for k in keys}
        series = {k: v for k, v in series.items() if v}
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key, points in series.items():
            ax.plot(*zip(*points, strict=True), marker=".", label=key)
        ax.set_xlabel("step")
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{panel}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
