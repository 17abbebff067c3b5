"""The bench stage's measurements: latencies, the cost model, the throughput speedup, graph warm-up."""

import copy
import math
import random

import pytest
import torch

from specdraft.stages.bench import run_benchmark, warm_up
from specdraft.stages.bench_metrics import latencies_ms, step_costs
from specdraft.stages.bench_rows import is_truncated
from specdraft.decoding.cost_model import leviathan_speedup
from specdraft.plumbing.config import BenchConfig
from specdraft.decoding.speculative import Timeline, autoregressive_generate, speculative_generate
from specdraft.engine import Engine
from specdraft.stages.bench_repeats import median, timing_order


class CharTokenizer:
    """Just what the bench needs: a chat prompt of > 16 ids (a prefill never graph-sized), decode, eos."""

    eos_token_id = None

    def apply_chat_template(self, messages, **_):
        return [ord(c) % 97 for c in "".join(m["content"] for m in messages)]

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(map(str, ids))


def records(n):
    return [{"id": f"p{i}", "scenario": "easy", "answer": "1",
             "messages": [{"role": "user", "content": f"problem number {i}: " + "x" * (8 * i)},
                          {"role": "assistant", "content": "#### 1"}]} for i in range(n)]


def test_ttft_and_itl_follow_vllm_definitions():
    ttft, itl = latencies_ms(10.0, [10.5, 10.5, 10.5, 11.1])
    assert ttft == pytest.approx(500) and itl == pytest.approx(200)  # (11.1 - 10.5) / 3 later tokens
    assert math.isnan(latencies_ms(0.0, [1.0])[1]) and math.isnan(latencies_ms(0.0, [])[0])


def test_step_costs_skip_the_prefill_step_and_count_rejections():
    timeline = Timeline(num_proposed=[4, 4, 4, 2], num_accepted=[4, 1, 4, 2],
                        proposal_seconds=[9.0, 0.4, 0.4, 0.2], verification_seconds=[9.0, 1.0, 3.0, 0.5])
    costs = step_costs(timeline, 4)
    assert costs.draft_token_ms == pytest.approx(1e3 * 1.0 / 10)  # (0.4 + 0.4 + 0.2) s over 10 tokens
    assert costs.verification_ms == pytest.approx(1e3 * 2.0)  # full (k=4) steps after the first only
    assert costs.num_rejected_steps == 1 and costs.alpha == pytest.approx(11 / 12)  # 11 accepted, one step stopped by a rejection


def test_leviathan_formula_matches_simulated_iid_acceptance():
    rng = random.Random(0)
    for alpha, k in ((0.0, 3), (0.6, 4), (0.9, 2), (1.0, 5)):
        tokens = 0
        for _ in range(20000):
            accepted = 0
            while accepted < k and rng.random() < alpha:
                accepted += 1
            tokens += accepted + 1
        assert leviathan_speedup(alpha, k, c=0.0) == pytest.approx(tokens / 20000, rel=0.02)
    assert leviathan_speedup(0.0, 4, c=0.25) == pytest.approx(0.5)  # one token per 1 + 4 * 0.25 steps


@pytest.fixture(scope="module")
def engines(target, draft):
    return Engine.from_hf(target, max_seq_len=512), Engine.from_hf(draft, max_seq_len=512)


@pytest.mark.slow
def test_after_warm_up_timed_decoding_meets_no_new_graph_shape(engines):
    """On a GPU every shape met first is a CUDA-graph capture: none may happen inside the timings."""
    target, draft = engines
    prompts = [torch.randint(0, 97, (1, n), generator=torch.Generator().manual_seed(n)) for n in (20, 40)]
    common = {"max_new_tokens": 300, "temperature": 0.0, "top_p": 1.0, "eos_token_id": None}
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    warm_up(target, draft, prompts, [2, 4], generator, common)  # each length's prefill has its own shape
    met = (set(target.session_runner().shapes_met), set(draft.session_runner().shapes_met))
    # 300 new tokens cross from the 256-column KV bucket into the 512 one; k' runs down to 0 at the end.
    for prompt in prompts:
        autoregressive_generate(target, prompt, **common)
        for k in (2, 4):
            speculative_generate(target, draft, prompt, num_speculative_tokens=k, **common)
        speculative_generate(target, draft, prompt, num_speculative_tokens=3, max_new_tokens=300,
                             temperature=1.0, generator=generator())
    assert (target.session_runner().shapes_met, draft.session_runner().shapes_met) == met


def test_without_warm_up_the_same_decoding_meets_new_shapes(target, draft):
    """The check above can fail: a plain engine meets its shapes during decoding."""
    engine_target, engine_draft = Engine.from_hf(target, max_seq_len=512), Engine.from_hf(draft, max_seq_len=512)
    prompt = torch.randint(0, 97, (1, 20), generator=torch.Generator().manual_seed(0))
    speculative_generate(engine_target, engine_draft, prompt, num_speculative_tokens=4, max_new_tokens=8)
    before = set(engine_target.session_runner().shapes_met)
    speculative_generate(engine_target, engine_draft, prompt, num_speculative_tokens=4, max_new_tokens=300)
    assert engine_target.session_runner().shapes_met > before


def test_bench_rows_report_a_throughput_speedup_and_consistent_latencies(engines, caplog):
    cfg = BenchConfig(num_problems=2, num_speculative_tokens=(2, 3), max_new_tokens=40, temperature=0.0, top_p=1.0,
                      concurrency=1, repeats=1)  # one timing: the latency identities below hold run by run
    rows, mismatches = run_benchmark(*engines, CharTokenizer(), records(2), cfg, seed=0, enable_thinking=False)
    assert "inside the timings" not in caplog.text  # every graph shape was met in the warm-up
    assert [(r.id, r.k) for r in rows] == [("p0", 2), ("p0", 3), ("p1", 2), ("p1", 3)]
    for r in rows:
        assert r.matches_target and r.num_new_tokens == r.target_num_new_tokens == 40
        assert r.repeats == 1 and r.truncated and r.target_truncated  # 40 tokens, no eos, no ####
        assert r.speculative_tokens_per_s == pytest.approx(r.num_new_tokens / r.speculative_seconds)
        assert r.target_tokens_per_s == pytest.approx(r.target_num_new_tokens / r.target_seconds)
        assert r.speedup == pytest.approx(r.speculative_tokens_per_s / r.target_tokens_per_s)
        # TTFT and the later tokens' ITL add up to the run's time, less the call's set-up and return.
        assert 0 < r.ttft_ms + r.itl_ms * (r.num_new_tokens - 1) <= r.speculative_seconds * 1e3
        assert 0 < r.target_ttft_ms + r.target_itl_ms * 39 <= r.target_seconds * 1e3
        assert r.draft_cost > 0 and r.verification_cost > 0 and 0 <= r.alpha <= 1
        assert r.predicted_speedup > 0 and r.predicted_speedup_steps > 0
        assert math.isnan(r.peak_memory_gib)  # no GPU: peak memory is not measured
        assert r.correct == r.target_correct  # greedy: the same output, so the same answer


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_after_warm_up_timed_decoding_captures_no_cuda_graph(target, draft):
    engine_target = Engine.from_hf(copy.deepcopy(target).to("cuda"), max_seq_len=512)
    engine_draft = Engine.from_hf(copy.deepcopy(draft).to("cuda"), max_seq_len=512)
    prompt = torch.randint(0, 97, (1, 20), generator=torch.Generator().manual_seed(0)).cuda()
    common = {"max_new_tokens": 300, "temperature": 0.0, "top_p": 1.0, "eos_token_id": None}
    warm_up(engine_target, engine_draft, [prompt], [2, 4], lambda: torch.Generator("cuda").manual_seed(0), common)
    captured = engine_target.session_runner().num_graphs, engine_draft.session_runner().num_graphs
    for k in (2, 4):
        speculative_generate(engine_target, engine_draft, prompt, num_speculative_tokens=k, **common)
    autoregressive_generate(engine_target, prompt, **common)
    assert (engine_target.session_runner().num_graphs, engine_draft.session_runner().num_graphs) == captured
    assert captured[0] > 0 and captured[1] > 0


def test_timing_order_rotates_so_no_run_is_always_first():
    assert timing_order(3, 0, 0) == [0, 1, 2] and timing_order(3, 1, 0) == [1, 2, 0]
    assert timing_order(3, 1, 1) == [2, 0, 1]
    for num_runs in (1, 2, 4):
        orders = [timing_order(num_runs, i, 0) for i in range(num_runs)]
        # Problem i starts at run i: over num_runs problems every run is timed in every position once.
        for position in range(num_runs):
            assert sorted(order[position] for order in orders) == list(range(num_runs))
        assert all(sorted(order) == list(range(num_runs)) for order in orders)
    with pytest.raises(ValueError, match="num_runs must be >= 1"):
        timing_order(0, 0, 0)


def test_median_skips_what_was_not_measured():
    assert median([3.0, 1.0, 2.0]) == 2.0 and median([1.0, math.nan, 3.0]) == 2.0
    assert math.isnan(median([math.nan])) and math.isnan(median([]))


def test_truncated_means_cut_by_the_cap_before_the_answer():
    eos = 9
    assert is_truncated([1] * 8, "48+24=", max_new_tokens=8, eos_token_id=eos)
    assert not is_truncated([1] * 7 + [eos], "48+24=72", max_new_tokens=8, eos_token_id=eos)  # finished at eos
    assert not is_truncated([1] * 8, "48+24=72 #### 72", max_new_tokens=8, eos_token_id=eos)  # answer written
    assert not is_truncated([1] * 5, "48+24=", max_new_tokens=8, eos_token_id=eos)  # stopped early
    assert is_truncated([1] * 8, "48", max_new_tokens=8, eos_token_id=None)


def test_each_problem_runs_repeats_times_in_the_rotated_order(engines, monkeypatch):
    """The target alone and every k are timed `repeats` times, problem i starting the cycle at run i, and
    a row's times are the medians of its repeats."""
    import specdraft.stages.bench as bench_module

    calls, clock = [], iter(range(0, 10_000))
    real_auto, real_spec = bench_module.autoregressive_generate, bench_module.speculative_generate

    def auto(*args, **kwargs):
        calls.append(0)
        return real_auto(*args, **kwargs)

    def spec(*args, num_speculative_tokens, **kwargs):
        calls.append(num_speculative_tokens)
        return real_spec(*args, num_speculative_tokens=num_speculative_tokens, **kwargs)

    cfg = BenchConfig(num_problems=2, num_speculative_tokens=(2, 3), max_new_tokens=6, temperature=0.0, top_p=1.0,
                      concurrency=1, repeats=2)
    monkeypatch.setattr(bench_module, "autoregressive_generate", auto)
    monkeypatch.setattr(bench_module, "speculative_generate", spec)
    durations = iter([1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 4.0, 5.0, 6.0, 40.0, 50.0, 60.0])
    monkeypatch.setattr(bench_module, "_timed", lambda fn, device: (fn(), float(next(clock)), next(durations)))
    monkeypatch.setattr(bench_module, "warm_up", lambda *args: None)
    rows, _ = run_benchmark(*engines, CharTokenizer(), records(2), cfg, seed=0, enable_thinking=False)
    # Problem 0: repeat 0 target, k2, k3; repeat 1 k2, k3, target. Problem 1 starts one further on.
    assert calls == [0, 2, 3, 2, 3, 0, 2, 3, 0, 3, 0, 2]
    by = {(r.id, r.k): r for r in rows}
    assert by["p0", 2].target_seconds == median([1.0, 30.0]) and by["p0", 2].speculative_seconds == median([2.0, 10.0])
    assert by["p0", 3].speculative_seconds == median([3.0, 20.0])
    assert by["p1", 2].target_seconds == median([6.0, 50.0]) and by["p1", 3].speculative_seconds == median([5.0, 40.0])
    assert all(r.repeats == 2 for r in rows)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_repeats_decode_the_same_tokens_greedy_and_sampled(engines, temperature):
    """Greedy, and sampled with one generator seed per problem and k: every repeat decodes what the first did."""
    cfg = BenchConfig(num_problems=2, num_speculative_tokens=(2,), max_new_tokens=12, temperature=temperature,
                      top_p=1.0, concurrency=1, repeats=3)
    rows, mismatches = run_benchmark(*engines, CharTokenizer(), records(2), cfg, seed=0, enable_thinking=False)
    assert mismatches == 0 and len(rows) == 2
