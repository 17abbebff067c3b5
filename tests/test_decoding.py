import pytest
import torch

from specdraft.decoding.metrics import SpecStats
from specdraft.decoding.speculative import autoregressive_generate, speculative_generate
from tests.tiny_models import hf_greedy, tiny_qwen2

MAX_NEW = 40


@pytest.fixture(params=[0, 1, 2])
def prompt(request):
    return torch.randint(0, 97, (1, 5 + 3 * request.param), generator=torch.Generator().manual_seed(request.param))


def test_autoregressive_matches_hf_generate(target, prompt):
    assert torch.equal(autoregressive_generate(target, prompt, max_new_tokens=MAX_NEW),
                       hf_greedy(target, prompt, MAX_NEW))


@pytest.mark.parametrize("k", range(1, 7))
def test_greedy_speculative_equals_target_greedy(target, draft, prompt, k):
    out = speculative_generate(target, draft, prompt, num_speculative_tokens=k, max_new_tokens=MAX_NEW)
    assert torch.equal(out.token_ids, hf_greedy(target, prompt, MAX_NEW))
    assert out.stats.num_accepted < out.stats.num_proposed  # the draft disagrees: rollback was exercised
    assert len(out.token_ids) == MAX_NEW


@pytest.mark.parametrize("k", range(1, 7))
def test_greedy_speculative_stops_at_eos(target, draft, prompt, k):
    reference = hf_greedy(target, prompt, MAX_NEW)
    eos = int(reference[len(reference) // 2])  # a token the target produces mid-way
    expected = hf_greedy(target, prompt, MAX_NEW, eos_token_id=eos)
    out = speculative_generate(target, draft, prompt, num_speculative_tokens=k, max_new_tokens=MAX_NEW,
                               eos_token_id=eos)
    assert torch.equal(out.token_ids, expected)
    assert int(out.token_ids[-1]) == eos and len(out.token_ids) < MAX_NEW


@pytest.mark.parametrize("k", range(1, 7))
def test_eos_inside_an_accepted_proposal_is_counted_as_vllm_counts(target, prompt, k):
    """An identical draft proposes the eos and the target accepts it: the output stops at the eos, but the
    step's counts are taken before the stop check, as vLLM's scheduler takes them: its k draft tokens were
    all scheduled and all accepted, those after the eos too (Hugging Face and the native engine alike)."""
    from specdraft.engine import Engine

    reference = hf_greedy(target, prompt, MAX_NEW).tolist()
    # The last token met for the first time that an identical draft proposes (not a step's bonus token).
    e = max(i for i in range(MAX_NEW - k - 1) if reference[i] not in reference[:i] and i % (k + 1) != k)
    engine = Engine.from_hf(target, max_seq_len=128)
    for pair in ((target, target), (engine, Engine(engine.decoder, max_seq_len=128))):
        out = speculative_generate(*pair, prompt, num_speculative_tokens=k, max_new_tokens=MAX_NEW,
                                   eos_token_id=reference[e])
        assert out.token_ids.tolist() == reference[: e + 1]
        assert out.stats.num_steps == e // (k + 1) + 1
        assert out.stats.num_proposed == out.stats.num_accepted == k * out.stats.num_steps
        assert out.stats.num_accepted_per_position == [out.stats.num_steps] * k
        # The last step accepted past the eos: fewer tokens were emitted than accepted + steps.
        assert len(out.token_ids) < out.stats.num_accepted + out.stats.num_steps


@pytest.mark.parametrize("k", [1, 3, 5])
def test_identical_draft_is_always_accepted(target, prompt, k):
    out = speculative_generate(target, target, prompt, num_speculative_tokens=k, max_new_tokens=MAX_NEW)
    assert out.stats.acceptance_rate == 1.0
    # Every step but the last gains k+1 tokens; the last is clipped to max_new_tokens.
    assert out.stats.num_steps == -(-MAX_NEW // (k + 1))


def test_max_new_tokens_is_exact_for_every_k(target, draft, prompt):
    for max_new in (1, 2, 7):
        for k in (1, 4, 8):
            out = speculative_generate(target, draft, prompt, num_speculative_tokens=k, max_new_tokens=max_new)
            assert len(out.token_ids) == max_new


def test_sampling_is_reproducible_with_a_generator(target, draft, prompt):
    def run(seed):
        return speculative_generate(target, draft, prompt, num_speculative_tokens=3, max_new_tokens=20,
                                    temperature=1.0, generator=torch.Generator().manual_seed(seed)).token_ids
    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_rejects_a_draft_with_another_vocabulary(target, prompt):
    other = tiny_qwen2(3, vocab_size=90)
    with pytest.raises(ValueError, match="pad_vocab"):
        speculative_generate(target, other, prompt, num_speculative_tokens=2, max_new_tokens=4)


def test_rejects_k_below_one(target, draft, prompt):
    with pytest.raises(ValueError, match="num_speculative_tokens must be >= 1"):
        speculative_generate(target, draft, prompt, num_speculative_tokens=0, max_new_tokens=4)


def test_stats_definitions():
    stats = SpecStats()
    stats.observe(4, 4)
    stats.observe(4, 1)
    stats.observe(2, 0)
    assert stats.acceptance_rate == 5 / 10
    assert stats.mean_acceptance_length == 1 + 5 / 3
    assert stats.num_accepted_per_position == [2, 1, 1, 1]
