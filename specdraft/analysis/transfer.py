"""The transfer matrix: per scenario, every draft (tuned on one style, or untrained) serving every target, each
cell the exact offline acceptance of the draft over the target's own greedy answers."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from specdraft.analysis.offline_acceptance import TargetOutput, draft_agreement, read_outputs, replay_greedy
from specdraft.plumbing.atomic import atomic_path
from specdraft.models.engine_choice import load_served
from specdraft.analysis.palette import STYLE_ORDER

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransferRow:
    """One draft serving one target at one k, pooled over the target's test answers (vLLM's definitions)."""

    scenario: str
    target: str  # the style the target was tuned on, or 'untrained'
    draft: str  # the style the draft was tuned on, or 'untrained'
    k: int
    num_problems: int
    num_tokens: int  # answer tokens, eos included
    agreement_rate: float  # share of answer tokens where the draft's teacher-forced argmax is the target's
    num_proposed: int
    num_accepted: int
    num_steps: int
    acceptance_rate: float  # accepted / proposed
    mean_acceptance_length: float  # 1 + accepted / steps


def transfer_rows(scenario: str, outputs: dict[str, list[TargetOutput]], draft_style: str, draft, ks: tuple[int, ...],
                  max_new_tokens: int) -> list[TransferRow]:
    """`draft` (tuned on `draft_style`) against every target's outputs `{target style: outputs}`, for every k."""
    rows = []
    for target_style, target_outputs in outputs.items():
        agreements = [draft_agreement(draft, o) for o in target_outputs]
        num_tokens = sum(o.num_new_tokens for o in target_outputs)
        num_agreeing = sum(sum(a[: o.num_new_tokens]) for o, a in zip(target_outputs, agreements))
        for k in ks:
            proposed = accepted = steps = 0
            for output, agrees in zip(target_outputs, agreements):
                stats, _ = replay_greedy(agrees, num_new_tokens=output.num_new_tokens, num_speculative_tokens=k,
                                         max_new_tokens=max_new_tokens)
                proposed, accepted, steps = (proposed + stats.num_proposed, accepted + stats.num_accepted,
                                             steps + stats.num_steps)
            rows.append(TransferRow(
                scenario=scenario, target=target_style, draft=draft_style, k=k, num_problems=len(target_outputs),
                num_tokens=num_tokens, agreement_rate=num_agreeing / max(1, num_tokens), num_proposed=proposed,
                num_accepted=accepted, num_steps=steps, acceptance_rate=accepted / max(1, proposed),
                mean_acceptance_length=1 + accepted / max(1, steps)))
    return rows


def plot_transfer(rows: list[TransferRow], path: str) -> None:
    """A heat map per k: targets down, drafts across, colour = acceptance rate, text = mean acceptance length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ks = sorted({r.k for r in rows})
    targets = [s for s in STYLE_ORDER if s in {r.target for r in rows}]
    drafts = [s for s in STYLE_ORDER if s in {r.draft for r in rows}]
    cell = {(r.k, r.target, r.draft): r for r in rows}
    rates = [r.acceptance_rate for r in rows]
    low, high = min(rates), max(rates)
    if high - low < 1e-9:
        low, high = low - 0.05, high + 0.05
    side = 0.75 * max(len(drafts), len(targets))  # inches per matrix
    fig, axes = plt.subplots(1, len(ks), figsize=(1.8 + (side + 0.5) * len(ks), side + 1.4), squeeze=False,
                             layout="constrained")
    for ax, k in zip(axes[0], ks):
        matrix = np.array([[cell[(k, t, d)].acceptance_rate if (k, t, d) in cell else np.nan for d in drafts]
                           for t in targets])
        image = ax.imshow(matrix, cmap="viridis", vmin=low, vmax=high)
        for i, t in enumerate(targets):
            for j, d in enumerate(drafts):
                if (k, t, d) in cell:
                    r = cell[(k, t, d)]
                    light = r.acceptance_rate < (low + high) / 2
                    ax.text(j, i, f"{r.acceptance_rate:.2f}\n({r.mean_acceptance_length:.2f})", ha="center",
                            va="center", fontsize=8, color="white" if light else "black")
        ax.set_xticks(range(len(drafts)), drafts)
        ax.set_yticks(range(len(targets)), targets)
        ax.set_xlabel("draft tuned on")
        ax.set_title(f"k = {k}", fontsize=9)
    axes[0][0].set_ylabel("target tuned on")
    fig.colorbar(image, ax=axes[0].tolist(), label="acceptance rate", shrink=0.8)
    scenario = rows[0].scenario
    fig.suptitle(f"Transfer, {scenario}: acceptance rate (mean acceptance length)", fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def transfer(scenario: str, outputs_paths: dict[str, str], drafts: dict[str, tuple[str, str | None]], *,
             ks: tuple[int, ...], max_new_tokens: int, vocab_size: int, table_path: str, plot_path: str, engine: str,
             dtype: str, device: str, engine_weights: str) -> None:
    """The transfer stage of one scenario.

    outputs_paths: {target style: target_outputs.jsonl}; drafts: {draft style: (base, adapter or None)};
    vocab_size: the target's embedding rows, every draft padded to it as for the bench.
    """
    import pandas as pd

    outputs = {style: read_outputs(path) for style, path in outputs_paths.items()}
    max_seq_len = max(len(o.prompt_ids) + len(o.output_ids) for outs in outputs.values() for o in outs)
    rows = []
    for draft_style, (base, adapter) in drafts.items():  # one draft in memory at a time
        draft = load_served(base, adapter=adapter, engine=engine, weights=engine_weights, dtype=dtype, device=device,
                            max_seq_len=max_seq_len, vocab_size=vocab_size)
        rows += transfer_rows(scenario, outputs, draft_style, draft, ks, max_new_tokens)
        del draft
    with atomic_path(table_path) as tmp:
        pd.DataFrame([asdict(r) for r in rows]).to_csv(tmp, index=False, float_format="%.4f")
    plot_transfer(rows, plot_path)
    for r in rows:
        log.info("target %s, draft %s, k=%d: acceptance rate %.3f, mean acceptance length %.2f", r.target, r.draft,
                 r.k, r.acceptance_rate, r.mean_acceptance_length)
