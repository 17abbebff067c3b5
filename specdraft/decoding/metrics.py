"""What speculative decoding counts: proposed and accepted tokens per step, as vLLM counts them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SpecStats:
    """Counts over the steps of one or more generations, taken before the stop check as vLLM takes them: accepted
    tokens past an accepted eos count, and proposed is what a step scheduled (fewer near max_new_tokens)."""

    num_proposed: int = 0
    num_accepted: int = 0
    num_steps: int = 0
    num_accepted_per_position: list[int] = field(default_factory=list)  # [i]: steps accepted through position i

    def observe(self, num_proposed: int, num_accepted: int) -> None:
        self.num_proposed += num_proposed
        self.num_accepted += num_accepted
        self.num_steps += 1
        if len(self.num_accepted_per_position) < num_proposed:
            self.num_accepted_per_position += [0] * (num_proposed - len(self.num_accepted_per_position))
        for i in range(num_accepted):
            self.num_accepted_per_position[i] += 1

    @property
    def acceptance_rate(self) -> float:
        return self.num_accepted / self.num_proposed if self.num_proposed else 0.0

    @property
    def mean_acceptance_length(self) -> float:
        """1 + accepted / steps: tokens gained per target forward, the recovered or bonus token included."""
        return 1 + self.num_accepted / self.num_steps if self.num_steps else 0.0

