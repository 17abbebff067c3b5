"""A Qwen2 / Qwen3 / Llama decoder over a static KV cache: a step writes columns start..start+T-1 and attends
over the first kv_len, so its shapes are fixed by (batch, T, kv_len) and rollback is a smaller start.
Numerics follow `transformers`, so float32 logits agree with theirs to rounding."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from specdraft.engine import tuner as tuning
from specdraft.engine.attention import attention_mask, decode_attention
from specdraft.engine.quant import GROUP, QUANTIZERS, DequantWorkspace, fast_kernels, linear, quantize_into
from specdraft.engine.rope import rope_and_cache, rope_and_cache_reference
from specdraft.plumbing.names import MODEL_DTYPE, WEIGHT_FORMATS


@dataclass(frozen=True)
class DecoderShape:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    attention_bias: bool
    qk_norm: bool = False  # Qwen3: RMSNorm over each query and key head before RoPE

    @classmethod
    def from_hf_config(cls, config, attention_bias: bool, qk_norm: bool = False) -> DecoderShape:
        rope_theta = getattr(config, "rope_theta", None)
        if rope_theta is None:  # transformers 5 keeps it under rope_parameters
            rope_theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return cls(
            vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads, num_kv_heads=config.num_key_value_heads, head_dim=head_dim,
            intermediate_size=config.intermediate_size, rms_norm_eps=config.rms_norm_eps,
            rope_theta=float(rope_theta), max_position_embeddings=config.max_position_embeddings,
            attention_bias=attention_bias, qk_norm=qk_norm,
        )


class KVCache:
    """Preallocated keys and values, [layers, batch, kv_heads, max_seq_len, head_dim] each (`k_all`, `v_all`),
    and per layer a view of them (`k`, `v`): one tensor, so a fused step reaches every layer's cache."""

    def __init__(self, shape: DecoderShape, batch_size: int, max_seq_len: int, dtype: torch.dtype,
                 device: torch.device):
        size = (shape.num_layers, batch_size, shape.num_kv_heads, max_seq_len, shape.head_dim)
        self.k_all = torch.zeros(size, dtype=dtype, device=device)
        self.v_all = torch.zeros(size, dtype=dtype, device=device)
        self.k, self.v = list(self.k_all.unbind(0)), list(self.v_all.unbind(0))
        self.batch_size, self.max_seq_len = batch_size, max_seq_len

    @property
    def device(self) -> torch.device:
        return self.k[0].device

    def rows(self, start: int, stop: int) -> KVCache:
        """The cache rows start..stop-1 as a cache of their own (views: writes land in this cache)."""
        view = KVCache.__new__(KVCache)
        view.k_all, view.v_all = self.k_all[:, start:stop], self.v_all[:, start:stop]
        view.k, view.v = list(view.k_all.unbind(0)), list(view.v_all.unbind(0))
        view.batch_size, view.max_seq_len = stop - start, self.max_seq_len
        return view


def layer_step(x: Tensor, qkv_weight: Tensor, qkv_bias: Tensor | None, o_weight: Tensor, gate_up_weight: Tensor,
               down_weight: Tensor, input_norm: Tensor, post_norm: Tensor, k_cache: Tensor, v_cache: Tensor,
               cos: Tensor, sin_signed: Tensor, columns: Tensor, mask: Tensor, num_heads: int, num_kv_heads: int,
               eps: float, qk_norm: Tensor | None = None, scales: tuple[Tensor, ...] | None = None,
               workspace: DequantWorkspace | None = None) -> Tensor:
    """One layer on x [B, T, H]: writes keys and values into the cache [B_cache, nkv, S_max, hd] at `columns`
    ([1, T] or [B, T]), attends under mask [B, 1, T * group, S]. qk_norm: Qwen3's [nh + nkv, hd] or None;
    scales: of quantized PROJECTIONS, or None. Pure in tensors, so `torch.compile` compiles it once."""
    B, T, H = x.shape
    head_dim = k_cache.shape[-1]
    group = num_heads // num_kv_heads
    qkv_scale, o_scale, gate_up_scale, down_scale = scales if scales is not None else (None,) * 4
    qkv = linear(x, qkv_weight, qkv_scale, qkv_bias, norm_weight=input_norm, eps=eps, workspace=workspace)  # norm fused
    qkv = qkv.view(B, T, num_heads + 2 * num_kv_heads, head_dim)
    fast = fast_kernels(x) and tuning.current().launch.runs("rope_attention")
    if fast:
        q = rope_and_cache(qkv, cos, sin_signed, k_cache, v_cache, columns, qk_norm, eps, num_heads, num_kv_heads)
    else:
        q = None
    if q is None:
        q = rope_and_cache_reference(qkv, cos, sin_signed, k_cache, v_cache, columns, qk_norm, eps, num_heads,
                                     num_kv_heads)
    attn = None
    if fast:
        attn = decode_attention(q, k_cache, v_cache, mask)
    if attn is None:
        kv_len = mask.shape[-1]
        attn = F.scaled_dot_product_attention(q, k_cache[:B, :, :kv_len], v_cache[:B, :, :kv_len],
                                              attn_mask=mask)  # [B, nkv, T*g, hd]
    attn = attn.view(B, num_kv_heads, T, group, head_dim).permute(0, 2, 1, 3, 4).reshape(B * T, num_heads * head_dim)
    x = linear(attn, o_weight, o_scale, residual=x.view(B * T, H), workspace=workspace)  # residual add fused in
    act = linear(x, gate_up_weight, gate_up_scale, norm_weight=post_norm, eps=eps, glu=True,
                 workspace=workspace)  # SiLU(gate) * up
    x = linear(act, down_weight, down_scale, residual=x, workspace=workspace)
    return x.view(B, T, H)


PROJECTIONS = ("qkv", "o", "gate_up", "down")  # a layer's matrices, in `layer_step`'s order of scales


def _quantized_weight(linear: nn.Linear, weights: str, name: str) -> tuple[nn.Parameter, Tensor]:
    """Empty weight and scales: int8 [N, K] and [N], or packed int4 [N, K / 2] uint8 and [N, K / GROUP]."""
    N, K = linear.weight.shape
    if weights == "int8":
        return nn.Parameter(torch.empty(N, K, dtype=torch.int8), requires_grad=False), torch.empty(N)
    if K % GROUP:
        raise ValueError(f"engine weights 'int4' need each matrix's input size to be a multiple of {GROUP}; the "
                         f"{name} matrix [{N}, {K}] is not (use engine_weights: int8 for this model)")
    return (nn.Parameter(torch.empty(N, K // 2, dtype=torch.uint8), requires_grad=False),
            torch.empty(N, K // GROUP))


class Layer(nn.Module):
    def __init__(self, shape: DecoderShape, weights: str = MODEL_DTYPE):
        super().__init__()
        s = shape
        self.qkv = nn.Linear(s.hidden_size, (s.num_heads + 2 * s.num_kv_heads) * s.head_dim, bias=s.attention_bias)
        self.o = nn.Linear(s.num_heads * s.head_dim, s.hidden_size, bias=False)
        self.gate_up = nn.Linear(s.hidden_size, 2 * s.intermediate_size, bias=False)
        self.down = nn.Linear(s.intermediate_size, s.hidden_size, bias=False)
        self.input_norm = nn.Parameter(torch.ones(s.hidden_size))
        self.post_norm = nn.Parameter(torch.ones(s.hidden_size))
        self.qk_norm = nn.Parameter(torch.ones(s.num_heads + s.num_kv_heads, s.head_dim)) if s.qk_norm else None
        self.scales: tuple[Tensor, ...] | None = None  # int8 / int4: the scales of PROJECTIONS
        self.quantized = weights in QUANTIZERS
        if self.quantized:
            for name in PROJECTIONS:
                getattr(self, name).weight, scale = _quantized_weight(getattr(self, name), weights, name)
                self.register_buffer(f"{name}_scale", scale)

    def refresh_scales(self) -> None:
        """Point `scales` at the scale buffers (after `to_empty` or `to` replaced them)."""
        if self.quantized:
            self.scales = tuple(getattr(self, f"{name}_scale") for name in PROJECTIONS)


class Decoder(nn.Module):
    """weights: 'model_dtype', 'int8' or 'int4' for the layers' matrices and the lm-head (`quant`); the
    embedding stays in the model's dtype, as a step reads one row of it."""

    def __init__(self, shape: DecoderShape, weights: str = MODEL_DTYPE):
        super().__init__()
        if weights not in WEIGHT_FORMATS:
            raise ValueError(f"engine weights must be one of {list(WEIGHT_FORMATS)}, got {weights!r}")
        self.shape, self.weights = shape, weights
        self.embed = nn.Embedding(shape.vocab_size, shape.hidden_size)
        self.layers = nn.ModuleList(Layer(shape, weights) for _ in range(shape.num_layers))
        self.norm = nn.Parameter(torch.ones(shape.hidden_size))
        self.lm_head = nn.Linear(shape.hidden_size, shape.vocab_size, bias=False)
        self.register_buffer("lm_head_scale", None)
        if weights in QUANTIZERS:
            self.lm_head.weight, self.lm_head_scale = _quantized_weight(self.lm_head, weights, "lm_head")
        inv_freq = 1.0 / (shape.rope_theta ** (torch.arange(0, shape.head_dim, 2).float() / shape.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.compiled_layer_step = None
        self.stacked: dict[str, Tensor] = {}  # `stack_layers`
        self.fused_step = None  # a `fused_step.FusedStep`, made on first use (`fused_step_for`)
        self.dequant_workspace = DequantWorkspace()  # prefills of quantized weights

    @classmethod
    def from_hf(cls, model, dtype: torch.dtype | None = None, device: torch.device | None = None,
                weights: str = MODEL_DTYPE) -> Decoder:
        """Copy a Hugging Face causal LM's weights (LoRA merged first), quantizing each matrix as copied."""
        return cls.from_state(model.config, model.state_dict(), dtype=dtype or next(model.parameters()).dtype,
                              device=device or next(model.parameters()).device, weights=weights)

    @classmethod
    @torch.no_grad()
    def from_state(cls, config, state: Mapping[str, Tensor], *, dtype: torch.dtype, device: torch.device,
                   weights: str = MODEL_DTYPE) -> Decoder:
        """The decoder of `config` from `state` (Hugging Face names; a lazy mapping is asked once a name)."""
        if "sliding_attention" in (getattr(config, "layer_types", None) or []):
            raise ValueError("the native engine attends over the whole sequence; this model has sliding-window "
                             "layers (use_sliding_window): serve it with engine 'hf'")
        bias = "model.layers.0.self_attn.q_proj.bias" in state
        qk_norm = "model.layers.0.self_attn.q_norm.weight" in state
        shape = DecoderShape.from_hf_config(config, attention_bias=bias, qk_norm=qk_norm)
        with torch.device("meta"):
            decoder = cls(shape, weights)
        # Cast on the meta device before allocating, so float32 defaults never occupy the device.
        decoder = decoder.to(dtype)  # floating tensors only: int8/uint8 weights stay
        for module in (decoder.embed, decoder.lm_head):
            module.to_empty(device=device)
        decoder.to_empty(device=device, recurse=False)
        decoder.stack_layers(device)
        inv_freq = 1.0 / (shape.rope_theta ** (torch.arange(0, shape.head_dim, 2, device=device).float()
                                                / shape.head_dim))
        decoder.inv_freq = inv_freq  # recomputed: to_empty left the buffer uninitialised

        def put(owner: nn.Module, name: str, weight: Tensor) -> None:  # a matrix, quantized if int8 / int4
            if weights in QUANTIZERS:
                quantize_into(weight, getattr(owner, name).weight, getattr(owner, f"{name}_scale"), weights)
            else:
                getattr(owner, name).weight.copy_(weight)

        matrix = state["model.embed_tokens.weight"]
        decoder.embed.weight.copy_(matrix)
        if "lm_head.weight" in state:  # else tied embeddings
            del matrix  # before the head is made: one vocabulary-sized matrix at a time
            matrix = state["lm_head.weight"]
        put(decoder, "lm_head", matrix)
        del matrix
        decoder.norm.copy_(state["model.norm.weight"])
        for i, layer in enumerate(decoder.layers):
            p = f"model.layers.{i}."
            put(layer, "qkv", torch.cat([state[p + f"self_attn.{n}_proj.weight"] for n in "qkv"]))
            if bias:
                layer.qkv.bias.copy_(torch.cat([state[p + f"self_attn.{n}_proj.bias"] for n in "qkv"]))
            put(layer, "o", state[p + "self_attn.o_proj.weight"])
            put(layer, "gate_up", torch.cat([state[p + "mlp.gate_proj.weight"], state[p + "mlp.up_proj.weight"]]))
            put(layer, "down", state[p + "mlp.down_proj.weight"])
            layer.input_norm.copy_(state[p + "input_layernorm.weight"])
            layer.post_norm.copy_(state[p + "post_attention_layernorm.weight"])
            if qk_norm:
                layer.qk_norm[: shape.num_heads].copy_(state[p + "self_attn.q_norm.weight"])
                layer.qk_norm[shape.num_heads :].copy_(state[p + "self_attn.k_norm.weight"])
            layer.refresh_scales()
        return decoder.eval().requires_grad_(False)

    def stack_layers(self, device: torch.device) -> None:
        """Allocate every layer's tensors as views of one [layers, ...] tensor a name (`stacked`), so that one
        kernel reaches each layer's matrix at a fixed stride (`fused_step`)."""
        self.stacked = {}
        first = self.layers[0]
        for name, tensor in [*first.named_parameters(), *first.named_buffers()]:
            stacked = torch.empty((len(self.layers), *tensor.shape), dtype=tensor.dtype, device=device)
            self.stacked[name] = stacked
            for layer, view in zip(self.layers, stacked.unbind(0)):
                *path, attr = name.split(".")
                owner = layer.get_submodule(".".join(path))
                if isinstance(getattr(owner, attr), nn.Parameter):
                    setattr(owner, attr, nn.Parameter(view, requires_grad=False))
                else:
                    setattr(owner, attr, view)
        for layer in self.layers:
            layer.refresh_scales()

    def forward(self, input_ids: Tensor, start: Tensor, pad: Tensor, cache: KVCache, kv_len: int,
                last_only: bool = False, compiled: bool = False, logit_rows: Tensor | None = None) -> Tensor:
        """input_ids [B, T] at columns start.. (start [1] or [B]); pad [B]: each row's first column; attends
        over columns < kv_len. Returns logits [B, T, V]; of the last position only (last_only), or of the
        positions in logit_rows [n] (a device tensor, so a graph serves any n positions)."""
        s = self.shape
        T = input_ids.shape[1]
        columns = start[:, None] + torch.arange(T, device=input_ids.device)  # [1 or B, T]
        positions = columns - pad[:, None]  # [B, T] RoPE positions
        freqs = positions[..., None].float() * self.inv_freq  # [B, T, hd/2]
        x = self.embed(input_ids)  # [B, T, H]
        cos = torch.cat((freqs, freqs), dim=-1).cos().to(x.dtype)  # [B, T, hd]
        sin_signed = torch.cat((-freqs, freqs), dim=-1).sin().to(x.dtype)
        mask = attention_mask(columns, pad, kv_len, s.num_heads // s.num_kv_heads, x.dtype)
        step = self.compiled_layer_step if compiled and self.compiled_layer_step is not None else layer_step
        workspace = self.dequant_workspace if step is layer_step and self.weights in QUANTIZERS else None
        for i, layer in enumerate(self.layers):
            x = step(x, layer.qkv.weight, layer.qkv.bias, layer.o.weight, layer.gate_up.weight, layer.down.weight,
                     layer.input_norm, layer.post_norm, cache.k[i], cache.v[i], cos, sin_signed, columns, mask,
                     s.num_heads, s.num_kv_heads, s.rms_norm_eps, layer.qk_norm, layer.scales, workspace)
        if last_only:
            x = x[:, -1:]
        elif logit_rows is not None:
            x = x.index_select(1, logit_rows)
        return linear(x, self.lm_head.weight, self.lm_head_scale, norm_weight=self.norm, eps=s.rms_norm_eps,
                      workspace=workspace)

    def compile_layers(self) -> None:
        """Fuse each layer's small kernels with `torch.compile`: one compilation serves all layers."""
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        self.compiled_layer_step = torch.compile(layer_step, fullgraph=True)
