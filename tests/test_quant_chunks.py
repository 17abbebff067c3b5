"""Quantizing a matrix a block of rows at a time (the engine's build) equals quantizing it whole, bit for bit."""

import pytest
import torch

from specdraft.engine.quant import QUANTIZERS, quantize_into


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({2: torch.int16, 4: torch.int32}[t.element_size()])


@pytest.mark.parametrize("weights", ["int8", "int4"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_row_blocks_equal_the_whole_matrix(weights, dtype):
    torch.manual_seed(0)
    weight = (torch.randn(37, 256) * torch.logspace(-3, 1, 37)[:, None]).to(dtype)  # rows of unequal scale
    weight[5] = 0  # an all-zero row
    whole_q, whole_scale = QUANTIZERS[weights](weight, dtype)
    for chunk_rows in (1, 4, 10, 37, None):
        q, scale = torch.empty_like(whole_q), torch.empty_like(whole_scale)
        quantize_into(weight, q, scale, weights, chunk_rows=chunk_rows)
        assert torch.equal(q, whole_q) and torch.equal(bits(scale), bits(whole_scale))


def test_the_engine_build_quantizes_in_blocks(monkeypatch):
    """Decoder.from_hf goes through quantize_into, never asking for more than a block of rows at once."""
    import specdraft.engine.quant as quant
    from specdraft.engine.decoder import Decoder
    from tests.tiny_models import tiny_qwen2

    seen = []
    original = quant.quantize_int8

    def recording(weight, scale_dtype):
        seen.append(weight.shape[0])
        return original(weight, scale_dtype)

    monkeypatch.setitem(quant.QUANTIZERS, "int8", recording)
    monkeypatch.setattr(quant, "CHUNK_ELEMENTS", 32 * 8)
    Decoder.from_hf(tiny_qwen2(0), weights="int8")
    assert seen and max(seen) <= 8
