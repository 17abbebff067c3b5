"""What speculative decoding counts: proposed and accepted tokens per step, as vLLM counts them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SpecStats:
    """Counts over the steps of one or more generations, as vLLM counts them (its scheduler records a
    step's spec-decode stats before its stop check): a step's proposed tokens are the draft tokens it
    scheduled for verification (k, fewer where max_new_tokens leaves less room), and its accepted tokens
    are every draft token verification accepted, those after an accepted eos included (they are verified,
    then cut by the stop check, so the step emits fewer tokens than accepted + 1)."""

    num_proposed: int = 0
    num_accepted: int = 0
    num_steps: int = 0
    # num_accepted_per_position[i]: steps whose proposal was accepted up to and including position i.
    num_accepted_per_position: list[int] = field(default_factory=list)

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
        """accepted / proposed."""
        return self.num_accepted / self.num_proposed if self.num_proposed else 0.0

    @property
    def mean_acceptance_length(self) -> float:
        """1 + accepted / steps: tokens gained per target forward, the recovered or bonus token included."""
        return 1 + self.num_accepted / self.num_steps if self.num_steps else 0.0

