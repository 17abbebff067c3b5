"""Speed at a chosen acceptance, for `engine_speed.py --acceptance 0.6,0.7,...`: verification replaced by
`SyntheticAcceptance` (each draft token accepted with that probability, seeded), tokens/s measured at each
rate next to the Leviathan et al. prediction from the same run's costs: c = one draft token / one target
step, and the verification of k + 1 tokens / one target step. Batch 1 (`batch1_curve`) and batched
(`concurrency_curve`). `plot` draws the curves from the JSON engine_speed.py writes:

    python benchmarks/acceptance_curve.py results.json [more.json] --out docs/perf/acceptance_curve.png
"""

from __future__ import annotations

import argparse
import json

SEED = 0  # every rate's verdicts drawn from the same seed: repeats replay the same steps


def parse_rates(text: str) -> list[float]:
    rates = [float(r) for r in text.split(",") if r]
    if not rates or not all(0.0 <= r <= 1.0 for r in rates):
        raise SystemExit(f"--acceptance: comma-separated rates in [0, 1], got {text!r}")
    return rates


def curve_row(rate: float, k: int, tok_s: float, baseline_tok_s: float, outputs_stats: list, c: float,
              verification_cost: float) -> dict:
    """One point: measured tokens/s and speedup over the target alone, the measured acceptance, and the
    prediction from the same run's c and verification cost."""
    from specdraft.decoding.cost_model import leviathan_speedup

    steps = sum(s.num_steps for s in outputs_stats)
    first = sum(s.num_accepted_per_position[0] for s in outputs_stats if s.num_accepted_per_position)
    return {"acceptance": rate, "k": k, "tok_s": tok_s, "speedup": tok_s / baseline_tok_s,
            "predicted_speedup": leviathan_speedup(rate, k, c, verification_cost),
            "first_token_acceptance_measured": first / steps if steps else 0.0,
            "mean_acceptance_length": 1 + sum(s.num_accepted for s in outputs_stats) / steps if steps else 0.0,
            "c": c, "verification_cost": verification_cost}


def batch1_curve(engine_target, engine_draft, prompt, rates: list[float], max_new_tokens: int, timed, parts: dict,
                 baseline_tok_s: float) -> list[dict]:
    """k = 5 (the step parts' verification is of 6 tokens): `speculative_generate` at each rate."""
    from specdraft.decoding.speculative import speculative_generate
    from specdraft.decoding.verification import SyntheticAcceptance

    k, rows = 5, []
    c = parts["draft_token_ms"] / parts["target_step_ms"]
    verification_cost = parts["verification_6_ms"] / parts["target_step_ms"]
    for rate in rates:
        def run():
            return speculative_generate(engine_target, engine_draft, prompt, num_speculative_tokens=k,
                                        max_new_tokens=max_new_tokens, acceptance=SyntheticAcceptance(rate, SEED))

        seconds = timed(run)
        out = run()
        rows.append(curve_row(rate, k, len(out.token_ids) / seconds, baseline_tok_s, [out.stats], c,
                              verification_cost))
    return rows


def concurrency_curve(engines, prompts, rates: list[float], ks: list[int], max_new_tokens: int, concurrency: int,
                      timed, results: dict) -> list[dict]:
    """`speculative_generate_batch` at each rate and k, against the target alone at this concurrency; c and
    the verification cost from the batched step parts (`results`' proposal_k / verification_k / target_step)."""
    from specdraft.decoding.batched import speculative_generate_batch
    from specdraft.decoding.verification import SyntheticAcceptance

    rows = []
    baseline = results[f"target_concurrency{concurrency}_tok_s"]
    for k in ks:
        c = results[f"proposal_k{k}_ms"] / k / results["target_step_ms"]
        verification_cost = results[f"verification_k{k}_ms"] / results["target_step_ms"]
        for rate in rates:
            def run():
                return speculative_generate_batch(*engines, prompts, num_speculative_tokens=k,
                                                  max_new_tokens=max_new_tokens, concurrency=concurrency,
                                                  acceptance=SyntheticAcceptance(rate, SEED))

            seconds = timed(run)
            outputs = run()
            tok_s = sum(len(o.token_ids) for o in outputs) / seconds
            rows.append(curve_row(rate, k, tok_s, baseline, [o.stats for o in outputs], c, verification_cost))
    return rows


def plot(paths: list[str], out: str) -> None:
    """Measured speedup (points) and the prediction (line) against acceptance, one colour per curve of
    every JSON's `acceptance_curve`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for path in paths:
        with open(path) as f:
            results = json.load(f)
        for name, rows in results.get("acceptance_curve", {}).items():
            for k in sorted({r["k"] for r in rows}):
                points = sorted((r for r in rows if r["k"] == k), key=lambda r: r["acceptance"])
                label = f"{results.get('shape')} {results.get('weights')} {name} k={k}"
                line, = ax.plot([r["acceptance"] for r in points], [r["predicted_speedup"] for r in points], "--")
                ax.plot([r["acceptance"] for r in points], [r["speedup"] for r in points], "o-",
                        color=line.get_color(), label=label)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xlabel("acceptance per draft token")
    ax.set_ylabel("speedup over the target alone")
    ax.set_title("measured (points) and Leviathan prediction (dashed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=150)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="engine_speed.py JSON files run with --acceptance")
    parser.add_argument("--out", default="acceptance_curve.png")
    args = parser.parse_args()
    plot(args.results, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
