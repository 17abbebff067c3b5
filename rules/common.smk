# Names and paths every rule shares.

EXPERIMENTS = [f"{style}_{scenario}" for style in CFG.styles for scenario in CFG.scenarios]
BASELINES = [f"untrained_{scenario}" for scenario in CFG.scenarios] if CFG.baseline.enabled else []
PLOT_METRICS = ["latency_per_correct", "cod_vs_cot", "speedup", "acceptance_rate", "tokens_per_answer", "predicted_speedup"]
TINY = CFG.models.source == "tiny"


def base_model(role):
    """The target's or draft's base weights: a hub name, or the demo's locally built model directory."""
    return f"results/base/{role}" if TINY else getattr(CFG.models, role)


def base_model_input(role):
    """The base model as a file dependency: only the demo's built models are files the DAG produces."""
    return [f"results/base/{role}"] if TINY else []


def source_files(wildcards):
    """Local source files the scenario reads (hub sources are fetched by the job itself)."""
    source = CFG.data.gsm8k if wildcards.scenario == "easy" else CFG.data.math
    if source.kind != "local":
        return []
    return [f"{source.path}/train.jsonl", f"{source.path}/test.jsonl"]


def teacher_input(wildcards):
    """The llm rewriter's teacher, when it is the demo's locally built target."""
    if wildcards.style != "cod" or CFG.data.cod_rewriter != "llm" or CFG.data.teacher is not None:
        return []
    return base_model_input("target")
