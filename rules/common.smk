# Names and paths every rule shares.

from specdraft.data.sources import SCENARIO_DATASET

EXPERIMENTS = [f"{style}_{scenario}" for style in CFG.styles for scenario in CFG.scenarios]
BASELINES = [f"untrained_{scenario}" for scenario in CFG.scenarios] if CFG.baseline.enabled else []
PLOT_METRICS = ["latency_per_correct", "cod_vs_cot", "speedup", "acceptance_rate", "tokens_per_answer", "predicted_speedup"]
# (experiment, seed) of every per-seed build; transfer and acceptance by class read the first seed's models.
EXPERIMENT_SEEDS = [(e, s) for e in EXPERIMENTS + BASELINES for s in CFG.seeds]
FIRST_SEED = CFG.seeds[0]
TINY = CFG.models.source == "tiny"
RANDOM = CFG.models.source == "random"


def base_model(role):
    """The target's or draft's base weights: a hub name, the demo's locally built model directory, or a
    weightless random checkpoint (models.source: random)."""
    if TINY:
        return f"results/base/{role}"
    if RANDOM:
        return f"results/random_base/{role}"
    return getattr(CFG.models, role)


def base_model_input(role):
    """The base model as a file dependency: the demo's built models and random checkpoints are DAG outputs.
    Rules name it `{role}_base`, where base_model_param finds it."""
    return [base_model(role)] if TINY or RANDOM else []


def base_model_param(role):
    """The base model as a param: the rule's `{role}_base` input when the workflow builds it (read from the
    job's input, so an executor that stages files elsewhere passes the staged path), else the hub name."""
    if TINY or RANDOM:
        return lambda wildcards, input: input[f"{role}_base"][0]
    return base_model(role)


def source_files(wildcards):
    """Local source files the scenario reads (hub sources are fetched by the job itself)."""
    source = CFG.data.gsm8k if wildcards.scenario == "easy" else CFG.data.math
    if source.kind != "local":
        return []
    return [f"{source.path}/train.jsonl", f"{source.path}/test.jsonl"]


def teacher_input(wildcards):
    """The llm rewriter's teacher, when it is the demo's locally built target."""
    if CFG.data.cod_rewriter != "llm" or CFG.data.teacher is not None:
        return []
    return base_model_input("target")


def data_files(wildcards):
    """The scenario's rewrites (`data.rewrites`) and the test sets of its dataset (`data.test_sets`) that exist:
    a change to them reruns prepare."""
    files = []
    if CFG.data.rewrites is not None:
        files += [f"{CFG.data.rewrites}/{style}_{wildcards.scenario}.jsonl" for style in ("cot", "cod")]
    if CFG.data.test_sets is not None:
        dataset = SCENARIO_DATASET[wildcards.scenario]
        files += [f"{CFG.data.test_sets}/{scenario}_test.jsonl" for scenario, other in SCENARIO_DATASET.items()
                  if other == dataset]
    return [f for f in files if os.path.isfile(f)]


def scenario_experiments(scenario):
    """(style, experiment) of every experiment of `scenario`: each tuned style, then the untrained pair."""
    pairs = [(style, f"{style}_{scenario}") for style in CFG.styles]
    return pairs + ([("untrained", f"untrained_{scenario}")] if CFG.baseline.enabled else [])
