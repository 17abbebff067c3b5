"""`SyntheticAcceptance`, the benchmarks' acceptance override: it accepts at the requested rate, the same way
for the same seed, and without it speculative decoding is the plain greedy path."""

import pytest
import torch

from specdraft.decoding import verification as decoding
from specdraft.decoding.batched import speculative_generate_batch
from specdraft.decoding.speculative import autoregressive_generate, speculative_generate
from specdraft.decoding.verification import SyntheticAcceptance


@pytest.mark.parametrize("rate", [0.0, 0.6, 0.9, 1.0])
def test_each_draft_token_is_accepted_with_the_requested_probability(rate):
    """Over 20,000 verdicts of k = 5: the number accepted follows the truncated geometric law of i.i.d.
    acceptance (P(n) = rate^n (1 - rate), P(k) = rate^k), within 4 standard errors per outcome."""
    B, k, V = 20_000, 5, 7
    draft_ids = torch.zeros(B, k, dtype=torch.long)
    logits = torch.randn(B, k + 1, V, generator=torch.Generator().manual_seed(0))
    num_accepted, next_token = SyntheticAcceptance(rate, seed=1).verify(draft_ids, logits)
    expected = torch.tensor([rate**n * (1 - rate) for n in range(k)] + [rate**k], dtype=torch.float64)
    observed = torch.bincount(num_accepted, minlength=k + 1).double() / B
    tolerance = 4 * (expected * (1 - expected) / B).sqrt() + 1e-12
    assert bool(((observed - expected).abs() <= tolerance).all()), (observed, expected)
    assert torch.equal(next_token, logits.argmax(-1).gather(1, num_accepted[:, None])[:, 0])  # target's token there


def test_the_same_seed_gives_the_same_verdicts_and_rates_are_checked():
    draft_ids, logits = torch.zeros(64, 4, dtype=torch.long), torch.zeros(64, 5, 3)
    first, second = (SyntheticAcceptance(0.7, seed=3).verify(draft_ids, logits)[0] for _ in range(2))
    assert torch.equal(first, second)
    assert not torch.equal(first, SyntheticAcceptance(0.7, seed=4).verify(draft_ids, logits)[0])
    with pytest.raises(ValueError, match=r"in \[0, 1\], got 1.5"):
        SyntheticAcceptance(1.5)


def test_speculative_decoding_measures_the_override_rate_and_is_exact_without_it(target, monkeypatch):
    """The draft is the target itself, so real verification accepts everything: with the override the
    stats show its rate instead; without one every verdict is `verify_greedy_batch`'s and the output is the
    target's greedy output, batch 1 and batched."""
    prompt = torch.randint(0, 97, (1, 6), generator=torch.Generator().manual_seed(0))
    out = speculative_generate(target, target, prompt, num_speculative_tokens=4, max_new_tokens=200,
                               acceptance=SyntheticAcceptance(0.5, seed=0))
    stats = out.stats  # accepted / proposed under i.i.d. acceptance: (r + r^2 + ... + r^k) / k
    assert abs(stats.num_accepted_per_position[0] / stats.num_steps - 0.5) < 0.15  # the first token: r
    assert abs(stats.acceptance_rate - sum(0.5**n for n in range(1, 5)) / 4) < 0.1
    greedy_verdicts = []
    original = decoding.verify_greedy_batch

    def spy(*args):
        greedy_verdicts.append(1)
        return original(*args)

    monkeypatch.setattr(decoding, "verify_greedy_batch", spy)
    plain = speculative_generate(target, target, prompt, num_speculative_tokens=4, max_new_tokens=30)
    assert torch.equal(plain.token_ids, autoregressive_generate(target, prompt, max_new_tokens=30))
    assert len(greedy_verdicts) == plain.stats.num_steps and plain.stats.acceptance_rate == 1.0
    with pytest.raises(ValueError, match="temperature must be 0"):
        speculative_generate(target, target, prompt, num_speculative_tokens=4, max_new_tokens=5, temperature=1.0,
                             acceptance=SyntheticAcceptance(0.5))


def test_batched_speculative_decoding_takes_the_override_too(target):
    from specdraft.engine import Engine

    engines = [Engine.from_hf(target, max_seq_len=256, max_batch_size=4) for _ in range(2)]  # a cache each
    prompts = [[1, 2, 3], [4, 5, 6, 7], [8, 9], [10, 11, 12]]
    outs = speculative_generate_batch(*engines, prompts, num_speculative_tokens=4, max_new_tokens=60,
                                      concurrency=4, acceptance=SyntheticAcceptance(0.5, seed=0))
    first = sum(o.stats.num_accepted_per_position[0] for o in outs) / sum(o.stats.num_steps for o in outs)
    assert abs(first - 0.5) < 0.15
    exact = speculative_generate_batch(*engines, prompts, num_speculative_tokens=4, max_new_tokens=20,
                                       concurrency=4)
    assert all(o.stats.acceptance_rate == 1.0 for o in exact)
