"""The bench stage's measurements: latencies, the cost model, the throughput speedup, graph warm-up."""

import copy
import math
import random

import pytest
import torch

from specdraft.bench import latencies_ms, run_benchmark, step_costs, warm_up
from specdraft.cost_model import leviathan_speedup
from specdraft.config import BenchConfig
from specdraft.decoding import Timeline, autoregressive_generate, speculative_generate
from specdraft.engine import Engine


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


def test_after_warm_up_timed_decoding_meets_no_new_graph_shape(engines):
    """On a GPU every shape met first is a CUDA-graph capture: none may happen inside the timings."""
    target, draft = engines
    prompts = [torch.randint(0, 97, (1, n), generator=torch.Generator().manual_seed(n)) for n in (20, 40)]
    common = {"max_new_tokens": 300, "temperature": 0.0, "top_p": 1.0, "eos_token_id": None}
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    warm_up(target, draft, prompts[:1], [2, 4], generator, common)
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
    cfg = BenchConfig(num_problems=2, num_speculative_tokens=(2, 3), max_new_tokens=40, temperature=0.0, top_p=1.0, concurrency=1)
    rows = run_benchmark(*engines, CharTokenizer(), records(2), cfg, seed=0)
    assert "inside the timings" not in caplog.text  # every graph shape was met in the warm-up
    assert [(r.id, r.k) for r in rows] == [("p0", 2), ("p0", 3), ("p1", 2), ("p1", 3)]
    for r in rows:
        assert r.matches_target and r.num_new_tokens == r.target_num_new_tokens == 40
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
