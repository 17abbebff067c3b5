"""`FusedStep`: a decoder's one-token batch-1 step as one persistent kernel (`triton_fused_step`), the lm-head's
argmax included, where the layer-by-layer path launches seven kernels a layer. Draft proposals use it: whatever
they propose, verification keeps the output exact; in float32 its logits equal the layer-by-layer engine's to
rounding (tests). Off the interpreter its programs, one per SM, meet at grid barriers between phases."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from specdraft.engine import tuner as tuning
from specdraft.engine.decoder import Decoder, KVCache
from specdraft.engine.launch import interpreting
from specdraft.engine.quant import fast_kernels

MAX_SPLITS = 16  # key splits per KV head; a step's count depends on its kv_len
PHASES = 5  # per layer, as the kernel's
MATRICES = ("qkv", "o", "gate_up", "down", "lm_head")  # bit i of the kernel's LOADS_AHEAD: MATRICES[i]


class FusedConfig(NamedTuple):
    programs: int  # 0: one per SM
    tile_elems: int  # weights a program loads in one round (rows x at most max_block_k columns; gate and up share it)
    max_block_k: int
    block_s: int  # keys per attention block
    num_warps: int
    barrier: bool = True  # one launch a token; False: one a phase (the reference the barrier is checked against)
    prefetch: bool = True  # later phases' weights asked for in L2 (a GPU instruction: off under the interpreter)
    prefetch_lines: int = 1024  # cache lines of one matrix each program asks for at most, a phase ahead
    head_ahead: int = 4  # lm-head tiles asked for in L2 ahead of the one loaded
    loads_ahead: tuple[str, ...] = ()  # MATRICES whose rounds' tiles load a round early: two in flight, not one


GPU_CONFIG = FusedConfig(programs=0, tile_elems=16384, max_block_k=4096, block_s=32, num_warps=8)
# Interpreter: several programs, tiles and key blocks, so that every split of rows, columns and keys runs.
INTERPRETER_CONFIG = FusedConfig(programs=3, tile_elems=64, max_block_k=16, block_s=16, num_warps=1, barrier=False,
                                 prefetch=False)


def tile(columns: int, k: int, programs: int, elems: int, max_block_k: int) -> tuple[int, int]:
    """(rows, columns) of one round of a program's loads from a [columns, k] matrix split over `programs`:
    the whole row where it fits, as many rows as `elems` weights hold, no more than a program owns."""
    import triton

    block_k = min(triton.next_power_of_2(k), max_block_k)
    owned = triton.next_power_of_2(-(-columns // programs))
    return max(2, min(elems // block_k, owned)), block_k


def unsupported(decoder: Decoder) -> str | None:
    """Why `decoder` has no fused step, or None."""
    if decoder.weights not in ("model_dtype", "int8"):
        return f"weights {decoder.weights!r} (the fused step reads model-dtype or int8 matrices)"
    if not decoder.stacked:
        return "layers not stacked (Decoder.stack_layers)"
    for name, stacked in decoder.stacked.items():
        *path, attr = name.split(".")
        for i, layer in enumerate(decoder.layers):
            if getattr(layer.get_submodule(".".join(path)), attr).data_ptr() != stacked[i].data_ptr():
                return f"layer {i}'s {name} is no longer a view of the stacked tensor"
    if decoder.shape.vocab_size >= 2**24:
        return "vocabulary of 2**24 tokens or more (the argmax passes columns as float32)"
    return None


class FusedStep:
    """The fused step of one decoder; workspaces and the RoPE table are made on first use."""

    def __init__(self, decoder: Decoder, config: FusedConfig | None = None):
        reason = unsupported(decoder)
        if reason is not None:
            raise ValueError(f"no fused step for this decoder: {reason}")
        self.decoder = decoder
        config = config or (INTERPRETER_CONFIG if interpreting() else GPU_CONFIG)
        ahead = config.loads_ahead
        if not isinstance(ahead, (tuple, frozenset)) or not set(ahead) <= set(MATRICES):
            raise ValueError(f"FusedConfig.loads_ahead: {ahead!r}; a tuple of names among {MATRICES}")
        self.config = config._replace(loads_ahead=tuple(m for m in MATRICES if m in ahead))  # one tuner key a set
        self._work: dict[str, Tensor] = {}
        self._rope: tuple[Tensor, Tensor] | None = None

    def _programs(self, device: torch.device) -> int:
        if self.config.programs:
            return self.config.programs
        return torch.cuda.get_device_properties(device).multi_processor_count

    def _workspaces(self, device: torch.device, dtype: torch.dtype, programs: int) -> dict[str, Tensor]:
        if not self._work:
            s = self.decoder.shape
            block_g, block_d = _block_sizes(s)
            parts = s.num_kv_heads * MAX_SPLITS * block_g
            empty = lambda n, t=dtype: torch.empty(n, dtype=t, device=device)  # noqa: E731
            self._work = dict(x=empty(s.hidden_size), qkv=empty((s.num_heads + 2 * s.num_kv_heads) * s.head_dim),
                              attn=empty(s.num_heads * s.head_dim), act=empty(s.intermediate_size),
                              acc=empty(parts * block_d, torch.float32), ml=empty(2 * parts, torch.float32),
                              best=empty(2 * programs, torch.float32),
                              counts=torch.zeros(3 + s.num_kv_heads, dtype=torch.int32, device=device))
        return self._work

    def _rope_table(self, positions: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """cos and signed sin [positions, head_dim], computed as `Decoder.forward` computes them."""
        if self._rope is None or self._rope[0].shape[0] < positions:
            if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
                raise RuntimeError("the fused step's RoPE table first needed inside a CUDA graph capture: run the "
                                   "step once before capturing it")
            freqs = torch.arange(positions, device=device)[:, None].float() * self.decoder.inv_freq
            self._rope = (torch.cat((freqs, freqs), dim=-1).cos().to(dtype),
                          torch.cat((-freqs, freqs), dim=-1).sin().to(dtype))
        return self._rope

    def __call__(self, input_ids: Tensor, start: Tensor, pad: Tensor, cache: KVCache, kv_len: int,
                 offset: int = 0) -> tuple[Tensor, Tensor] | None:
        """Feed input_ids [1, T] at columns start[0] + offset.. of cache row 0 (row start pad[0]), one token
        a launch. Returns the last token's logits [1, V] and their argmax [1, 1] (torch.argmax's tie-break),
        or None where the kernel does not compile here (the caller's path runs; `tuner.failures` says why)."""
        import triton

        block_s = self.config.block_s
        splits = min(MAX_SPLITS, triton.cdiv(kv_len, block_s))
        split_cols = triton.cdiv(triton.cdiv(kv_len, splits), block_s) * block_s
        splits = triton.cdiv(kv_len, split_cols)
        key = ("fused_step", self.decoder.shape, self.decoder.embed.weight.dtype, self.decoder.weights, splits,
               self.config)
        tuner = tuning.current()
        if key in tuner.failures:
            return None
        logits = torch.empty(self.decoder.shape.vocab_size, dtype=self.decoder.embed.weight.dtype,
                             device=input_ids.device)
        next_id = torch.empty((1, 1), dtype=torch.long, device=input_ids.device)
        try:
            for t in range(input_ids.shape[1]):
                self._launch(input_ids[0, t:], start, pad, cache, splits, split_cols, offset + t, logits, next_id,
                             head=t == input_ids.shape[1] - 1)
        except Exception as e:  # this Triton or GPU rejects it: the caller's path runs  # noqa: BLE001
            if key in tuner.compiled or torch.cuda.is_current_stream_capturing():
                raise
            tuner.failures[key] = tuning.reason(e)
            return None
        tuner.compiled.add(key)
        return logits[None], next_id

    def _launch(self, token: Tensor, start: Tensor, pad: Tensor, cache: KVCache, splits: int, split_cols: int,
                offset: int, logits: Tensor, next_id: Tensor, head: bool) -> None:
        """One token's layers (and, if `head`, its lm-head): one launch, or one a phase without the barrier."""
        from specdraft.engine import triton_fused_step

        for grid, args, kwargs in self.launches(token, start, pad, cache, splits, split_cols, offset, logits, next_id,
                                                head):
            triton_fused_step.fused_step_kernel[grid](*args, **kwargs)

    def launches(self, token: Tensor, start: Tensor, pad: Tensor, cache: KVCache, splits: int, split_cols: int,
                 offset: int, logits: Tensor, next_id: Tensor, head: bool) -> list[tuple[tuple, tuple, dict]]:
        """(grid, arguments, keyword arguments) of each `fused_step_kernel` launch `_launch` makes (benchmarks
        compile them for a GPU they do not have)."""
        import triton

        d, s, c = self.decoder, self.decoder.shape, self.config
        device, dtype = token.device, d.embed.weight.dtype
        programs = self._programs(device)
        work = self._workspaces(device, dtype, programs)
        cos, sin = self._rope_table(cache.max_seq_len, device, dtype)
        block_g, block_d = _block_sizes(s)
        st = d.stacked
        quantized = d.weights == "int8"
        dummy = work["x"]  # stands in for absent optional pointers (never read: the flags are off)
        scale = (lambda name: st[name]) if quantized else (lambda name: dummy)
        k_all, v_all = cache.k_all, cache.v_all
        stop = PHASES * s.num_layers + (1 if head else 0)
        ahead = sum(1 << i for i, m in enumerate(MATRICES) if m in c.loads_ahead)
        launches = []
        for first_step, stop_step in [(0, stop)] if c.barrier else [(i, i + 1) for i in range(stop)]:
            launches.append(((programs,), (
                token, start, pad, d.embed.weight, cos, sin, st["qkv.weight"], scale("qkv_scale"),
                st["qkv.bias"] if s.attention_bias else dummy, st["o.weight"], scale("o_scale"),
                st["gate_up.weight"], scale("gate_up_scale"), st["down.weight"], scale("down_scale"),
                st["input_norm"], st["post_norm"], st["qk_norm"] if s.qk_norm else dummy, d.lm_head.weight,
                d.lm_head_scale if quantized else dummy, d.norm, k_all, v_all, work["x"], work["qkv"], work["attn"],
                work["act"], work["acc"], work["ml"], work["best"], logits, next_id, work["counts"], first_step,
                stop_step, split_cols, offset, s.num_layers, s.hidden_size, s.num_heads, s.num_kv_heads, s.head_dim,
                s.intermediate_size, s.vocab_size, s.num_heads // s.num_kv_heads, st["qkv.weight"].stride(0),
                st["o.weight"].stride(0), st["gate_up.weight"].stride(0), st["down.weight"].stride(0),
                k_all.stride(0), k_all.stride(2), k_all.stride(3), s.rms_norm_eps, s.head_dim**-0.5), dict(
                HAS_SCALE=quantized, HAS_BIAS=s.attention_bias, QK_NORM=s.qk_norm, BARRIER=c.barrier,
                PREFETCH=c.prefetch, IEEE=dtype == torch.float32, NSPLIT=splits,
                SPLITS_P2=triton.next_power_of_2(splits), **self._tiles(programs), BLOCK_G=block_g, BLOCK_D=block_d,
                BLOCK_S=c.block_s, LINE_ELEMS=128 // st["qkv.weight"].element_size(), PREFETCH_CAP=c.prefetch_lines,
                HEAD_AHEAD=c.head_ahead if c.prefetch else 0, PHASES=PHASES, LOADS_AHEAD=ahead,
                num_warps=c.num_warps)))
        return launches

    def _tiles(self, programs: int) -> dict[str, int]:
        """Each matrix's tile (`tile`), as the kernel's BN_* / BK_* arguments."""
        s, c = self.decoder.shape, self.config
        nqkv, attn = (s.num_heads + 2 * s.num_kv_heads) * s.head_dim, s.num_heads * s.head_dim
        rows = lambda n, k, elems=c.tile_elems: tile(n, k, programs, elems, c.max_block_k)  # noqa: E731
        return dict(BN_QKV=rows(nqkv, s.hidden_size)[0], BN_O=rows(s.hidden_size, attn)[0],
                    BN_GU=rows(s.intermediate_size, s.hidden_size, c.tile_elems // 2)[0],
                    BN_DN=rows(s.hidden_size, s.intermediate_size)[0], BN_LM=rows(s.vocab_size, s.hidden_size)[0],
                    BK_H=rows(nqkv, s.hidden_size)[1], BK_O=rows(s.hidden_size, attn)[1],
                    BK_I=rows(s.hidden_size, s.intermediate_size)[1])


def _block_sizes(shape) -> tuple[int, int]:
    """(query rows of one KV head, head dimension), padded for tl.dot."""
    import triton

    return (max(16, triton.next_power_of_2(shape.num_heads // shape.num_kv_heads)),
            max(16, triton.next_power_of_2(shape.head_dim)))


def fused_step_for(decoder: Decoder) -> FusedStep | None:
    """The decoder's fused step where Triton runs here and the "fused_step" family is on, else None."""
    if not (fast_kernels(decoder.embed.weight) and tuning.current().launch.runs("fused_step")
            and unsupported(decoder) is None):
        return None
    if decoder.fused_step is None:
        decoder.fused_step = FusedStep(decoder)
    return decoder.fused_step
