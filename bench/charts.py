"""PNG charts of a run: model-only throughput per token budget, and latency CDFs."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def budget_chart(results: dict[str, Any], path: Path) -> Path:
    """Sentences/s of the model alone at each token budget, with end-to-end and peers as lines."""
    plt = _pyplot()
    sweep = results["model_only"]["sweep"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    budgets = [p["token_budget"] for p in sweep]
    ax.plot(budgets, [p["sentences_per_s"] for p in sweep], "o-", label="model only (sweep)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(budgets, [str(b) for b in budgets])
    lines = {"end-to-end, backlog": results.get("end_to_end", {}).get("saturation")}
    lines.update({name.replace("_", " "): run for name, run in results.get("peers", {}).items()})
    for (label, run), style in zip(lines.items(), ("-", "--", ":", "-."), strict=False):
        if run:
            ax.axhline(run["sentences_per_s"], linestyle=style, color="grey", linewidth=1)
            ax.annotate(label, (budgets[0], run["sentences_per_s"]), fontsize=8, va="bottom")
    ax.set_xlabel("token budget per micro-batch (padded wordpieces)")
    ax.set_ylabel("sentences / s")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{results['model']['name']} ({results['model']['backend']}), CPU")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_chart(results: dict[str, Any], path: Path) -> Path:
    """Empirical CDF of produce-to-output latency for every broker run."""
    plt = _pyplot()
    runs = {**results.get("end_to_end", {}), **results.get("peers", {})}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, run in runs.items():
        values = run.get("latencies_ms") or []
        if not values:
            continue
        shares = [(i + 1) / len(values) for i in range(len(values))]
        ax.step([v / 1000 for v in values], shares, where="post", label=name.replace("_", " "))
    ax.set_xscale("log")
    ax.set_xlabel("latency from produce to enriched output (s, log)")
    ax.set_ylabel("share of notes")
    ax.axhline(0.99, color="grey", linewidth=0.6, linestyle=":")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(results: dict[str, Any], out_dir: Path) -> list[Path]:
    name = results["name"]
    return [
        budget_chart(results, out_dir / f"{name}-throughput.png"),
        latency_chart(results, out_dir / f"{name}-latency.png"),
    ]
