"""docs/analysis.md, its figures (docs/analysis/demo.json) and plots, from a demo run's acceptance check,
by-class and transfer tables: nothing in them is typed by hand."""

from __future__ import annotations

import csv
import json
import platform
import shutil
from pathlib import Path

from specdraft.analysis.provenance import provenance_line
from specdraft.plumbing.names import EXPERIMENT_STYLES, SCENARIOS
METHOD = """\
Greedy speculative decoding emits the target's own greedy answer y. The step that starts after n emitted
tokens proposes the draft's greedy continuation; its j-th token is checked only if the j-1 before it were
accepted, i.e. equal to y, so it is the draft's greedy prediction *given the target's prefix*. One
teacher-forced forward of the draft over the target's answer therefore gives, at every position, whether the
draft agrees; a step accepts the run of agreements from its start, capped at its proposal length, and the next
step starts after the recovered or bonus token. `specdraft.analysis.offline_acceptance.replay_greedy` replays those steps for
any k, with `speculative_generate`'s own cap near `max_new_tokens` (k shrinks to `max_new_tokens - n - 1`) and
its stop at eos: a step that accepts eos ends there, and the stats count its tokens through eos as proposed and
accepted, nothing past it.

The `acceptance` stage (`results/{exp}/acceptance.csv`, one row per problem and output position;
`acceptance_prediction.csv`, one row per problem and every k from 1 to the largest configured) costs one
greedy decoding of the target plus one forward of each model, instead of one speculative run per k.
`acceptance_check` compares the prediction with the measured `benchmark.csv`. In bfloat16 on a GPU a near-tie
can fall differently in a full-sequence forward than step by step: `acceptance_check.csv` then counts the rows
that differ."""


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)])


def write_analysis_doc(run: Path, out: Path, record: dict, command: str) -> None:
    """Write `out` (analysis.md) and, beside it, analysis/demo.json and the plots, from `run`'s results;
    `record` is the provenance (specdraft.analysis.provenance) and `command` how the page was made."""
    results = run / "results"
    check = read_csv(results / "acceptance_check.csv")
    by_class = read_csv(results / "acceptance_by_class.csv")
    transfer = {s: read_csv(results / f"transfer_{s}.csv") for s in SCENARIOS
                if (results / f"transfer_{s}.csv").exists()}
    record = {"command": command, **record,
              "machine": f"{platform.machine()}, {platform.platform()}, python {platform.python_version()}",
              "acceptance_check": check, "acceptance_by_class": by_class, "transfer": transfer}
    raw = out.with_suffix("")
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "demo.json").write_text(json.dumps(record, indent=1) + "\n")
    for plot in ["acceptance_by_class", *(f"transfer_{s}" for s in transfer)]:
        shutil.copyfile(results / f"plots/{plot}.png", raw / f"{plot}.png")

    matching = sum(int(r["num_matching"]) for r in check)
    total = sum(int(r["num_problems"]) for r in check)
    check_rows = [[r["experiment"], r["k"], f'{r["num_matching"]} / {r["num_problems"]}',
                   r["predicted_acceptance_rate"], r["measured_acceptance_rate"]] for r in check]
    class_rows = [[r["style"], r["scenario"], r["class"], r["tokens"], r["token_share"], r["agreement_rate"]]
                  for r in by_class if int(r["tokens"]) > 0]
    smallest_k = min(int(r["k"]) for rows in transfer.values() for r in rows) if transfer else None
    transfer_rows = []
    for scenario, rows in transfer.items():
        for target in dict.fromkeys(r["target"] for r in rows):
            cells = {r["draft"]: r["acceptance_rate"] for r in rows
                     if r["target"] == target and int(r["k"]) == smallest_k}
            transfer_rows.append([scenario, target, *(cells.get(d, "–") for d in EXPERIMENT_STYLES)])
    out.write_text(f"""# Why the benchmark comes out as it does: exact offline acceptance, token classes, transfer

{provenance_line(record, command)}

Every figure below is in [`analysis/demo.json`](analysis/demo.json) with the command, commit, run and machine
that produced it: the demo (`demo/config.yaml`: tiny Qwen2 models, float32, CPU, greedy), run
{record["run_id"]} of {record["run_summary_written"]}.
Models this small say nothing about Qwen2.5: the tables show what the stages compute and that they agree with
the benchmark, not a finding.

## Exact offline acceptance

{METHOD}

**On the demo, {matching} of {total} benchmark rows are predicted exactly** (`num_new_tokens`, `num_proposed`,
`num_accepted`, `num_steps` and `accepted_per_position` all equal):

{table(["experiment", "k", "rows predicted exactly", "predicted acceptance rate", "measured"], check_rows)}

## Acceptance by token class

`results/acceptance_by_class.csv`: per style, scenario and class of the target's answer tokens (digits,
operators and `=`, LaTeX commands, words, whitespace, the `####` tail, eos, other; `specdraft/analysis/token_classes.py`),
the token count, its share of the answer and the draft's agreement rate.

![acceptance by token class](analysis/acceptance_by_class.png)

{table(["style", "scenario", "class", "tokens", "share of the answer", "draft agreement"], class_rows)}

## Transfer matrix

`results/transfer_{{scenario}}.csv`: each draft (tuned on CoT answers, on CoD answers, or untrained) serving each
target, from one teacher-forced pass of the draft over the target's own greedy answers, replayed for every
configured k; the diagonal is each experiment's own benchmark. Acceptance rate at k = {smallest_k} (rows: target;
columns: draft):

{table(["scenario", "target", "cot draft", "cod draft", "untrained draft"], transfer_rows)}

{chr(10).join(f"![transfer, {s}](analysis/transfer_{s}.png)" for s in transfer)}
""")
