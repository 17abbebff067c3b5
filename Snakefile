# specdraft: how the reasoning style a model is trained to write changes what speculative decoding buys.
#
# Data are prepared once (seed `seed`); everything after is built once per replicate seed (`seeds`) on them:
#   data/processed/{style}_{scenario}/{train,test}.jsonl          prepare
#   results/{style}_{scenario}/seed{seed}/target_adapter/         train_target   (LoRA SFT of the target)
#   results/{style}_{scenario}/seed{seed}/distilled.jsonl         distill        (the tuned target's answers)
#   results/{style}_{scenario}/seed{seed}/draft_adapter/          train_draft    (LoRA SFT of the draft on them)
#   results/{style}_{scenario}/seed{seed}/benchmark.csv, benchmark_run.json
#                                                                 bench          (speculative vs target alone)
#   results/untrained_{scenario}/seed{seed}/benchmark.csv, ...    baseline       (vanilla draft and target)
#   results/{experiment}/benchmark.csv, benchmark_run.json        combine_seeds  (every seed's, a `seed` column)
#   results/summary.csv, results/plots/*.png                      summary
#   data/processed/stats.csv                                      stats          (tokens and steps per style)
#   results/{exp}/seed{seed}/acceptance.csv, acceptance_prediction.csv
#                                                                 acceptance     (exact offline acceptance, every k)
#   results/acceptance_check.csv                                  acceptance_check (every seed)
#   results/acceptance_by_class.csv, results/transfer_{scenario}.csv
#                                                                 acceptance_by_class, transfer (the first seed)
#
# The workflow says what depends on what; the `specdraft` package does the work.

import os

from snakemake.utils import min_version

min_version("9.0")

from specdraft.plumbing.config import load_config, validate


# The seed experiment's settings; `--configfile` files are merged over them. Found next to this Snakefile,
# so `--directory` can put results anywhere.
configfile: os.path.join(workflow.basedir, "config.yaml")


# With --sdm conda, each environment's post-deploy script (envs/*.post-deploy.sh) installs the package from
# this source tree; Snakemake tells such a script only $CONDA_PREFIX, so the Snakefile passes the rest.
os.environ.update(SPECDRAFT_SOURCE=workflow.basedir)


# Validated against specdraft/plumbing/config.schema.yaml, failing before any job starts on an unknown key or value,
# and every default filled in (rules pass config sections as params so that a change reruns them).
config.update(validate(config))
CFG = load_config(config)


report: "report/workflow.rst"


wildcard_constraints:
    style="cot|cod",
    scenario="easy|medium|hard",
    seed=r"\d+",
    experiment="(cot|cod|untrained)_(easy|medium|hard)",


include: "rules/common.smk"
include: "rules/base_models.smk"
include: "rules/random_models.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/distill.smk"
include: "rules/bench.smk"
include: "rules/summary.smk"
include: "rules/merge.smk"
include: "rules/analysis.smk"


rule all:
    input:
        "results/summary.csv",
        expand("results/plots/{metric}.png", metric=PLOT_METRICS),
        "data/processed/stats.csv",
        "results/acceptance_check.csv",
        "results/acceptance_by_class.csv",
        expand("results/transfer_{scenario}.csv", scenario=CFG.scenarios),
    default_target: True
