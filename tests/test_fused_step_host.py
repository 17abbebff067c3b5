"""What `engine.fused_step` decides on the host, with no kernel run: which decoders it takes, which
configurations (on any CPU), and the LOADS_AHEAD bits it passes the kernel (where triton is installed)."""

import pytest
import torch

from specdraft.engine import Engine, fused_step
from tests.tiny_models import tiny_qwen2


def test_unsupported_decoders_say_why():
    engine = Engine.from_hf(tiny_qwen2(0, hidden_size=128), max_seq_len=16, weights="int4")
    assert "int4" in fused_step.unsupported(engine.decoder)
    engine = Engine.from_hf(tiny_qwen2(0), max_seq_len=16)
    assert fused_step.unsupported(engine.decoder) is None
    engine.decoder.layers[1].o.weight.data = engine.decoder.layers[1].o.weight.clone()
    assert "layer 1's o.weight" in fused_step.unsupported(engine.decoder)
    with pytest.raises(ValueError, match="no fused step"):
        fused_step.FusedStep(engine.decoder)


@pytest.mark.parametrize("ahead", [("qkv", "gate"), True, "qkv", ["qkv"]])
def test_loads_ahead_takes_only_a_tuple_of_the_fused_matrices(ahead):
    engine = Engine.from_hf(tiny_qwen2(0), max_seq_len=64, use_cuda_graphs=False)
    with pytest.raises(ValueError, match=r"FusedConfig.loads_ahead: .*; a tuple of names among \('qkv', 'o', "):
        fused_step.FusedStep(engine.decoder, fused_step.GPU_CONFIG._replace(loads_ahead=ahead))


@pytest.mark.parametrize("ahead, bits", [((), 0), (("lm_head", "gate_up", "qkv"), 0b10101), (("gate_up", "qkv", "o"), 0b111), (("down",), 0b1000),
                                         (fused_step.MATRICES, 0b11111)])
def test_loads_ahead_in_any_order_gives_one_config_and_its_bits(ahead, bits):
    """The kernel's bit i is MATRICES[i]; a set in another order is the same configuration (one tuner key)."""
    pytest.importorskip("triton")  # launches() sizes its blocks with triton's helpers
    engine = Engine.from_hf(tiny_qwen2(0), max_seq_len=64, use_cuda_graphs=False)
    step = fused_step.FusedStep(engine.decoder, fused_step.INTERPRETER_CONFIG._replace(loads_ahead=ahead))
    assert step.config.loads_ahead == tuple(m for m in fused_step.MATRICES if m in ahead)
    zero = torch.zeros(1, dtype=torch.long)
    (_, _, kwargs), *_ = step.launches(torch.tensor([3]), torch.tensor([8]), zero, engine.session_runner().cache, 1,
                                       32, 0, torch.empty(97), torch.empty((1, 1), dtype=torch.long), head=True)
    assert kwargs["LOADS_AHEAD"] == bits
