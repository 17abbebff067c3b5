"""Acceptance by token class: per style, scenario and class, the draft's agreement and accepted share at each k."""

from __future__ import annotations

import logging
import re

from specdraft.plumbing.atomic import atomic_path
from specdraft.analysis.palette import STYLE_ORDER, style_colour
from specdraft.analysis.token_classes import CLASSES
from specdraft.plumbing.names import SCENARIOS

log = logging.getLogger(__name__)

_ACCEPTED = re.compile(r"accepted_k(\d+)")


def read_positions(path: str):
    """An acceptance.csv as a DataFrame, token text kept verbatim (no NaN for an empty string)."""
    import pandas as pd

    return pd.read_csv(path, dtype={"id": str, "token": str, "token_class": str}, keep_default_na=False)


def class_table(acceptance: dict[str, str]):
    """One row per style, scenario and token class of the answer tokens (none past eos), from `{experiment: path}`.

    agreement_rate: the draft's teacher-forced argmax is the target's token; accepted_share_k{k}: emitted as an
    accepted draft token at k."""
    import pandas as pd

    rows, all_ks = [], set()
    for experiment, path in acceptance.items():
        style, scenario = experiment.split("_", 1)
        frame = read_positions(path)
        unknown = set(frame.token_class[~frame.after_end]) - set(CLASSES)
        if unknown:
            raise ValueError(f"{path}: unknown token classes {sorted(unknown)}; known: {list(CLASSES)}")
        answer = frame[~frame.after_end]
        ks = sorted(int(m.group(1)) for c in frame.columns if (m := _ACCEPTED.fullmatch(c)))
        all_ks.update(ks)
        for token_class in CLASSES:
            group = answer[answer.token_class == token_class]
            if group.empty:
                continue
            rows.append({
                "style": style, "scenario": scenario, "class": token_class, "tokens": len(group),
                "token_share": len(group) / len(answer), "agreement_rate": group.draft_agrees.mean(),
                **{f"accepted_share_k{k}": group[f"accepted_k{k}"].mean() for k in ks},
            })
    columns = ["style", "scenario", "class", "tokens", "token_share", "agreement_rate",
               *(f"accepted_share_k{k}" for k in sorted(all_ks))]
    return pd.DataFrame(rows, columns=columns)


def plot_classes(table, path: str) -> None:
    """Per scenario: agreement rate by class and style, labelled with token counts (left); class shares (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = [s for s in SCENARIOS if s in set(table.scenario)]
    styles = [s for s in STYLE_ORDER if s in set(table["style"])]
    classes = [c for c in CLASSES if c in set(table["class"])]
    width = 0.8 / len(styles)
    fig, axes = plt.subplots(len(scenarios), 2, figsize=(12, 0.8 + 3.2 * len(scenarios)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]}, layout="constrained")
    for row, scenario in enumerate(scenarios):
        agreement_ax, share_ax = axes[row]
        for i, style in enumerate(styles):
            part = table[(table.scenario == scenario) & (table["style"] == style)].set_index("class")
            xs = [c + i * width for c in range(len(classes))]
            present = [c in part.index for c in classes]
            rates = [part.agreement_rate.get(c, float("nan")) for c in classes]
            bars = agreement_ax.bar(xs, rates, width, color=style_colour(style), label=style)
            agreement_ax.bar_label(bars, labels=[str(part.tokens[c]) if p else "" for c, p in zip(classes, present)],
                                   fontsize=6, padding=1)
            share_ax.bar(xs, [part.token_share.get(c, 0.0) for c in classes], width, color=style_colour(style),
                         label=style)
        for ax, ylabel in ((agreement_ax, "draft agreement rate"), (share_ax, "share of answer tokens")):
            ax.set_xticks([c + width * (len(styles) - 1) / 2 for c in range(len(classes))], classes, fontsize=8)
            ax.set_ylabel(ylabel)
            ax.set_xlabel("token class", fontsize=8)
            ax.set_ylim(0, 1.1 if ax is agreement_ax else None)
        agreement_ax.set_title(f"{scenario}: draft agrees with the target's token (bar label: tokens)", fontsize=9)
        share_ax.set_title(f"{scenario}: what the answers are made of", fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(styles), title="style", fontsize=8)
    fig.suptitle("Acceptance by token class: where Chain of Draft gains or loses against Chain of Thought")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_class_acceptance(acceptance: dict[str, str], table_path: str, plot_path: str) -> None:
    """The by-class stage: results/acceptance_by_class.csv and its plot."""
    table = class_table(acceptance)
    with atomic_path(table_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    plot_classes(table, plot_path)
    log.info("%d rows over %d experiments -> %s", len(table), len(acceptance), table_path)
