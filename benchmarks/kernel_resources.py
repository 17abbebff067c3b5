"""What `linear_kernel` compiles to for a Hopper GPU, without one: Triton's own compiler and ptxas (both in the
Triton wheel) build the kernel for sm_90 on a CPU, and cuobjdump reads back each variant's registers, spills
and static shared memory; the PTX gives its instruction mix (mma, cp.async, barriers). The JIT's integer
specialisation is reproduced (pointers, K, N and the strides divisible by 16), so the code is the one a launch
on the H200 compiles. Writes JSON and prints a table.

    python benchmarks/kernel_resources.py --out kernel_resources.json
    python benchmarks/kernel_resources.py --tile 32,256,2,4,4 --flags norm,bias   # another tile, qkv's fusions
    python benchmarks/kernel_resources.py --fused-step default,loads_ahead --shape seed   # the draft's fused step
    python benchmarks/kernel_resources.py --fused-step default --loads-ahead "qkv;gate_up,down"  # ahead in some
    python benchmarks/kernel_resources.py --gemv "8,1024,1,4,2;16,256,1,4,4" --flags "bias;glu"   # GEMV forms

For the fused step, `FusedStep` builds its launch on a CPU copy of the draft with two of its layers (the JIT
compiles a count of one in as a constant; other counts give the same code) and the JIT's own specialisation of
those arguments is compiled for the GPU target.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import itertools
import json
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# How the norm runs in each variant: inside the loop, after `norm_prepass` (1/rms in the epilogue), or absent.
VARIANTS = {"norm inside": dict(NORM=True, NORM_INSIDE=True), "norm prepass": dict(NORM=True, NORM_INSIDE=False),
            "no norm": dict(NORM=False, NORM_INSIDE=True)}
# --gemv: the one-row form (sums after its loop, int8 by integer ops): its epilogue's loads after or before the
# loop, each round's loads in the round or a round ahead.
GEMV = dict(DOT=False, BLOCK_M=1, SUM_AFTER=True, FAST_INT8=True, NORM=True)
GEMV_VARIANTS = {"as before": dict(EARLY_EPILOGUE=False, LOADS_AHEAD=False),
                 "epilogue early": dict(EARLY_EPILOGUE=True, LOADS_AHEAD=False),
                 "loads ahead": dict(EARLY_EPILOGUE=False, LOADS_AHEAD=True),
                 "both (the tuner's candidate)": dict(EARLY_EPILOGUE=True, LOADS_AHEAD=True)}
POINTERS = {"x_ptr": "*bf16", "w_ptr": "*i8", "s_ptr": "*bf16", "b_ptr": "*bf16", "r_ptr": "*bf16", "nw_ptr": "*bf16",
            "sq_ptr": "*fp32", "o_ptr": "*bf16", "ws_ptr": "*fp32", "ss_ptr": "*fp32", "cnt_ptr": "*i32"}
DIVISIBLE = ("N", "K", "K_PER_SPLIT", "M_PAD", "stride_xm", "stride_wn", "stride_rm", "stride_om")  # by 16
PTX_COUNTS = {"mma.sync": r"mma\.sync", "wgmma": r"wgmma\.mma_async", "cp.async": r"cp\.async\.c[ag]",
              "bar.sync": r"bar\.sync", "ld.global": r"ld\.global", "ld.shared": r"ld\.shared"}


def compile_variant(tile: tuple[int, ...], flags: set[str], variant: dict, arch: int) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from specdraft.engine import triton_linear

    block_n, block_k, split_k, num_warps, num_stages = tile
    fn = triton_linear.linear_kernel
    names = list(inspect.signature(fn.fn).parameters)
    constants = dict(HAS_SCALE=True, HAS_BIAS="bias" in flags, HAS_RESIDUAL="residual" in flags, GLU="glu" in flags,
                     SPLIT_K=split_k, INT4=False, GROUP=128, IEEE=False, DOT=True, BLOCK_M=16, BLOCK_N=block_n,
                     BLOCK_K=block_k, SWAP=False, PDL=False, PREFETCH_LINES=1, LINE_ELEMS=128, SUM_AFTER=False,
                     FAST_INT8=False, NORM_INSIDE=True, EARLY_EPILOGUE=False, LOADS_AHEAD=False)
    constants.update(variant)
    signature = {n: POINTERS.get(n, "fp32" if n == "eps" else "constexpr" if n in constants else "i32") for n in names}
    source = ASTSource(fn, signature, constexprs={(names.index(n),): v for n, v in constants.items()},
                       attrs={(names.index(n),): [["tt.divisibility", 16]] for n in names
                              if n in POINTERS or n in DIVISIBLE})
    kernel = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                            options=dict(num_warps=num_warps, num_stages=num_stages))
    return resources(kernel, "linear_kernel")


def compile_launch(fn, args: tuple, kwargs: dict, arch: int):
    """What `fn[grid](*args, **kwargs)` compiles to on an sm_<arch> GPU: the JIT's binder specialises the
    arguments (types, 16-divisibility, constants) as a launch there would."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    bound, specialization, options = create_function_from_signature(fn.signature, fn.params, backend)(*args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, specialization, options)
    return triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target, options=options.__dict__)


def resources(kernel, name: str) -> dict:
    """Registers, spills and shared memory (cuobjdump), the PTX's instruction mix, and each spill store or
    reload of the SASS (nvdisasm) with the source line the compiler's line table gives it."""
    import triton

    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    with tempfile.TemporaryDirectory() as folder:
        cubin = Path(folder) / f"{name}.cubin"
        cubin.write_bytes(kernel.asm["cubin"])
        usage = subprocess.run([str(tools / "cuobjdump"), "-res-usage", str(cubin)], capture_output=True, text=True,
                               check=True).stdout
        sass = subprocess.run([str(tools / "nvdisasm"), "-c", "-g", str(cubin)], capture_output=True, text=True,
                              check=True).stdout
    found = {key.lower(): int(value) for key, value in re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", usage)}
    ptx = kernel.asm["ptx"]
    return {"registers": found["reg"], "spill_stack_bytes": found["stack"], "local_bytes": found["local"],
            "dynamic_shared_bytes": kernel.metadata.shared,
            "ptx": {name: len(re.findall(pattern, ptx)) for name, pattern in PTX_COUNTS.items()},
            "sass_instructions": len(re.findall(r"^\s+/\*[0-9a-f]+\*/", sass, re.M)), "spill_accesses": spills(sass)}


@functools.lru_cache(maxsize=None)
def source_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def source_line(path: Path, number: int) -> str:
    lines = source_lines(path)
    return lines[number - 1].strip() if number <= len(lines) else ""


def spills(sass: str) -> list[str]:
    """'<STL or LDL form> <file>:<line>: <source>' for each local-memory access of nvdisasm -g output."""
    out, where = [], "?"
    for text in sass.splitlines():
        line = re.search(r'//## File "([^"]+)", line (\d+)', text)
        if line:
            path, number = Path(line.group(1)), int(line.group(2))
            where = f"{path.name}:{number}: {source_line(path, number)}"
        elif op := re.search(r"\b(?:STL|LDL)[.A-Z0-9]*", text):
            out.append(f"{op.group(0)} {where}")
    return out


def fused_step_variants(shape_name: str, weights: str, names: list[str], arch: int,
                        ahead_sets: list[str] | None = None) -> dict:
    """`resources` of the fused step's kernel for each named configuration of benchmarks/fused_step.py, or
    for the first of them with each of `ahead_sets` (comma-separated matrices) as its loads_ahead."""
    import torch

    from engine_speed import SHAPES, build
    from fused_step import candidate_configs
    from specdraft.engine import Engine, fused_step, triton_fused_step

    shape = dict(SHAPES[shape_name]["draft"], num_hidden_layers=2)
    engine = Engine.from_hf(build(shape, torch.bfloat16, torch.device("cpu"), 0), max_seq_len=256,
                            use_cuda_graphs=False, weights=weights)
    zero, out = torch.zeros(1, dtype=torch.long), {}
    configs = {name: candidate_configs()[name]._replace(programs=132) for name in names}  # H200's SMs
    if ahead_sets is not None:
        configs = {f"{names[0]}, loads ahead: {text or 'none'}": configs[names[0]]._replace(
            loads_ahead=tuple(m for m in text.split(",") if m)) for text in ahead_sets}
    for name, config in configs.items():
        step = fused_step.FusedStep(engine.decoder, config)
        (_, args, kwargs), = step.launches(torch.tensor([3]), torch.tensor([128]), zero,
                                           engine.session_runner().cache, 5, 32, 0,
                                           torch.empty(shape["vocab_size"], dtype=torch.bfloat16),
                                           torch.empty((1, 1), dtype=torch.long), head=True)
        out[name] = {"constants": dict(kwargs), **resources(compile_launch(triton_fused_step.fused_step_kernel, args,
                                                                           kwargs, arch), "fused_step_kernel")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="kernel_resources.json")
    parser.add_argument("--tile", default="64,256,1,4,3",
                        help="block_n,block_k,split_k,num_warps,num_stages (a tensor-core tile of 16 rows)")
    parser.add_argument("--flags", default="norm,glu", help="what the matmul folds in besides its norm: glu, bias, "
                        "residual (comma-separated; 'norm' is ignored: the variants place it)")
    parser.add_argument("--gemv", default="", help="instead: one-row GEMV tiles (block_n,block_k,1,num_warps,"
                        "num_stages, ';'-separated), norm inside, for each of --flags (';'-separated sets): its "
                        "epilogue's loads after or before its loop, its rounds' loads ahead or not")
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90: H100 / H200)")
    parser.add_argument("--fused-step", default="", help="instead: the fused step's kernel under these comma-"
                        "separated configurations of benchmarks/fused_step.py (a 128-token context, 132 programs)")
    parser.add_argument("--shape", default="seed", help="the fused step's draft shape (engine_speed.SHAPES)")
    parser.add_argument("--weights", default="int8", help="the fused step's weights: int8 or model_dtype")
    parser.add_argument("--loads-ahead", default=None, help="with --fused-step: its first configuration with each "
                        "';'-separated set of fused_step.MATRICES (comma-separated) loaded a round ahead")
    args = parser.parse_args()
    if args.fused_step:
        import triton

        variants = fused_step_variants(args.shape, args.weights, args.fused_step.split(","), args.arch,
                                       None if args.loads_ahead is None else args.loads_ahead.split(";"))
        for name, row in variants.items():
            print(f"{name:40} registers {row['registers']:4}  spills {row['spill_stack_bytes']:4} B  "
                  + "  ".join(f"{k} {v}" for k, v in row["ptx"].items()), flush=True)
        with open(args.out, "w") as f:
            json.dump({"command": "python " + shlex.join(sys.argv), "triton": triton.__version__,
                       "arch": f"sm_{args.arch}", "conditions": f"{args.shape} draft, {args.weights} weights, bf16 "
                       "activations, 132 programs, 5 key splits of 32 columns (a 128-token context), compiled on a "
                       "CPU (no GPU involved)", "variants": variants}, f, indent=1)
        return

    import triton

    results = {"command": "python " + shlex.join(sys.argv), "triton": triton.__version__, "arch": f"sm_{args.arch}"}
    if args.gemv:
        results["conditions"] = "bf16 activations, int8 weights, one-row GEMV, compiled on a CPU (no GPU involved)"
        results["tiles"] = {}
        for text, fusions in itertools.product(args.gemv.split(";"), args.flags.split(";")):
            tile, flags = tuple(int(v) for v in text.split(",")), set(fusions.split(",")) - {"norm", ""}
            for name, variant in GEMV_VARIANTS.items():
                row = compile_variant(tile, flags, {**GEMV, **variant}, args.arch)
                results["tiles"].setdefault(text, {}).setdefault("norm," + ",".join(sorted(flags)), {})[name] = row
                print(f"{text:13} norm,{','.join(sorted(flags)):9} {name:28} registers {row['registers']:4}  spills "
                      f"{row['spill_stack_bytes']:4} B  ld.global {row['ptx']['ld.global']}", flush=True)
    else:
        tile = tuple(int(v) for v in args.tile.split(","))
        flags = set(args.flags.split(",")) - {"norm", ""}
        results.update(tile=dict(zip(("block_n", "block_k", "split_k", "num_warps", "num_stages"), tile)),
                       fusions=sorted(flags), conditions="bf16 activations, int8 weights, 16-row tensor-core tile, "
                       "compiled on a CPU (no GPU involved)", variants={})
        for name, variant in VARIANTS.items():
            row = results["variants"][name] = compile_variant(tile, flags, variant, args.arch)
            print(f"{name:13} registers {row['registers']:4}  spills {row['spill_stack_bytes']:4} B  shared "
                  f"{row['dynamic_shared_bytes']:6} B  " + "  ".join(f"{k} {v}" for k, v in row["ptx"].items()),
                  flush=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)

if __name__ == "__main__":
    main()
