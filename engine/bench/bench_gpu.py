"""GPU benchmark of one EntroPO-DPO training step (`npm run bench:engine-gpu`), printed as Markdown.

A realistic model shape with random weights (default: a Qwen3-4B-like decoder, ~4B parameters), bf16,
gradient checkpointing, LoRA r8 on all linear layers; one preference pair whose trajectories are
8k–16k tokens and share a system+task prefix. For each length it times the step with the shared prefix
packed into one forward (ours) and with the two trajectories run separately (baseline, same script),
and reports tokens/s, peak memory and model FLOPs utilisation.

MFU convention: useful FLOPs = 6 · N · T + 6 · n_layers · d_model · Σ_seq S² (causal attention, fwd+bwd),
counted for the two trajectories as if run separately (the work a trainer without prefix sharing must
do), divided by step time × the GPU's dense bf16 peak. Gradient-checkpoint recompute is not counted.

`--smoke` runs a tiny shape on CPU in float32 so the script itself is exercised without a GPU.
`--profile` adds, per case and mode, one profiled step split by kernel kind (flash attention, masked
memory-efficient attention, matrix products, other), to show what the step's GPU time goes to.
A mode that runs out of GPU memory is reported as an OOM row; the other rows still run.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from entropo_engine.data import Tokenized  # noqa: E402
from entropo_engine.logprobs import packed_pair, pair_logps  # noqa: E402
from entropo_engine.losses import entropo_dpo_loss  # noqa: E402
from entropo_engine.models import compile_decoder_layers  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks; checked in order, so "H100 PCIe" wins over "H100" (SXM).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}

SHAPES = {
    # Qwen3-4B-like: 36 layers, d 2560, 32 query heads / 8 KV heads of 128, MLP 9728, vocab 151936.
    "4b": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
               num_key_value_heads=8, head_dim=128, vocab_size=151936),
    # SmolLM2-135M (the model the CPU quickstart trains): 30 layers, d 576, 9 query / 3 KV heads of 64.
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, head_dim=64, vocab_size=49152, tie_word_embeddings=True),
    "smoke": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, vocab_size=1024),
}


def build_model(shape: str, device: torch.device, dtype: torch.dtype, checkpointing: bool):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=65536, rope_theta=1e6, attn_implementation="sdpa", use_cache=False)
    torch.manual_seed(0)
    with device:
        model = LlamaForCausalLM(config).to(dtype)
    n_params = sum(p.numel() for p in model.parameters())
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    return model, config, n_params


def make_pair(prefix: int, tail: int, vocab: int, seed: int) -> tuple[Tokenized, Tokenized]:
    g = torch.Generator().manual_seed(seed)
    shared = torch.randint(vocab, (prefix,), generator=g).tolist()
    out = []
    for _ in range(2):
        own = torch.randint(vocab, (tail,), generator=g).tolist()
        # The prefix (system + task) is not learned; every trajectory token after it is (as assistant turns).
        out.append(Tokenized(shared + own, [False] * prefix + [True] * tail))
    return out[0], out[1]


def step(model, chosen: Tokenized, rejected: Tokenized, share: bool, chunk: int) -> None:
    c, r, _ = pair_logps(model, chosen, rejected, chunk=chunk, share_prefix=share)
    ref_c, ref_r = c.logp.detach() - 1.0, r.logp.detach() + 1.0
    entropo_dpo_loss(c.logp, r.logp, ref_c, ref_r, beta=0.1, lam=0.01).sum().backward()


def useful_flops(n_params: int, config, lengths: list[int]) -> float:
    tokens = sum(lengths)
    attention = 6 * config.num_hidden_layers * config.hidden_size * sum(s * s for s in lengths)
    return 6 * n_params * tokens + attention


def peak_tflops(device: torch.device) -> tuple[float | None, str]:
    if device.type != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value, name
    return None, name


def kernel_kind(name: str) -> str:
    n = name.lower()
    if "cudnn" in n and "sdpa" in n:
        return "attention: cuDNN"
    if "flash" in n:
        return "attention: flash"
    if "fmha" in n or "efficient_attention" in n or "mem_eff" in n:
        return "attention: memory-efficient (masked)"
    if "attention" in n:
        return "attention: other"
    if any(k in n for k in ("gemm", "xmma", "nvjet", "cutlass", "aten::mm", "addmm", "bmm")):
        return "matrix products"
    if "softmax" in n:
        return "softmax"
    return "other (elementwise, norms, copies)"


def profile_step(model, chosen: Tokenized, rejected: Tokenized, share: bool, device: torch.device) -> tuple[float, dict[str, float], list[tuple[float, str]]]:
    """One step under the profiler: (wall s, device seconds per kernel kind, top kernels by self device time)."""
    from torch.profiler import ProfilerActivity, profile

    on_gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        step(model, chosen, rejected, share, chunk=2048)
        if on_gpu:
            torch.cuda.synchronize()
        wall = time.perf_counter() - started
    model.zero_grad(set_to_none=True)
    events = prof.key_averages()
    if on_gpu:  # kernels only (their self time is their whole time), not the CPU ops that launch them
        rows = [(e.self_device_time_total / 1e6, e.key) for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    else:
        rows = [(e.self_cpu_time_total / 1e6, e.key) for e in events]
    kinds: dict[str, float] = defaultdict(float)
    for seconds, name in rows:
        kinds[kernel_kind(name)] += seconds
    return wall, dict(kinds), sorted(rows, reverse=True)[:6]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shape on CPU, float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default="2048:6144,4096:12288", help="prefix:tail token counts per case")
    parser.add_argument("--profile", action="store_true", help="also profile one step per case and mode")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile each decoder layer (dynamic shapes), as an experiment")
    parser.add_argument("--cpu", action="store_true",
                        help="the SmolLM2-135M shape on CPU in float32, without gradient checkpointing (the trainer's "
                             "CPU defaults): does sharing the prefix pay there?")
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke or args.cpu else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --smoke or --cpu")
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    cases = [(64, 192)] if args.smoke else [tuple(map(int, c.split(":"))) for c in args.cases.split(",")]
    shape = "smoke" if args.smoke else "135m" if args.cpu else "4b"
    model, config, n_params = build_model(shape, device, dtype, checkpointing=not args.cpu)
    if args.compile:
        compile_decoder_layers(model)  # what the trainer's compile_layers does
    peak, device_name = peak_tflops(device)
    print(f"Device: {device_name}; torch {torch.__version__}; model: {n_params / 1e9:.2f}B params random weights "
          f"({config.num_hidden_layers} layers, d={config.hidden_size}, vocab {config.vocab_size}), {str(dtype).removeprefix('torch.')}, "
          f"{'' if args.cpu else 'gradient checkpointing, '}LoRA r8 all-linear\n")
    print("| trajectory tokens (prefix + tail) | prefix | step s | tokens/s | peak GiB | MFU |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    notes: list[str] = []
    for prefix, tail in cases:
        chosen, rejected = make_pair(prefix, tail, config.vocab_size, seed=prefix + tail)
        flops = useful_flops(n_params, config, [len(chosen), len(rejected)])
        packed_len = len(packed_pair(chosen, rejected)[0])
        with torch.no_grad():  # the two modes must compute the same thing (to the dtype's rounding)
            shared_lp = [s.logp.item() for s in pair_logps(model, chosen, rejected, chunk=2048, share_prefix=True)[:2]]
            apart_lp = [s.logp.item() for s in pair_logps(model, chosen, rejected, chunk=2048, share_prefix=False)[:2]]
        notes.append(f"{prefix} + {tail}: packed pair {packed_len} tokens; summed log-probs (chosen, rejected) "
                     f"shared {shared_lp[0]:.2f}, {shared_lp[1]:.2f} vs apart {apart_lp[0]:.2f}, {apart_lp[1]:.2f}")
        results = {}
        for share in (False, True):
            mode = "shared once" if share else "run twice"
            try:
                started = time.perf_counter()
                step(model, chosen, rejected, share, chunk=2048)  # warm-up (kernels, allocator, compilation)
                notes.append(f"{prefix} + {tail} {mode}: warm-up step {time.perf_counter() - started:.1f} s")
                model.zero_grad(set_to_none=True)
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                times = []
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    step(model, chosen, rejected, share, chunk=2048)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - started)
                    model.zero_grad(set_to_none=True)
            except torch.cuda.OutOfMemoryError as e:
                model.zero_grad(set_to_none=True)
                print(f"| {prefix} + {tail} (×2) | {mode} | OOM | | | |")
                notes.append(f"{prefix} + {tail} {mode}: out of memory: {str(e).splitlines()[0][:200]}")
                gc.collect()
                torch.cuda.empty_cache()
                continue
            seconds = sorted(times)[len(times) // 2]
            mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
            mfu = f"{100 * flops / seconds / (peak * 1e12):.1f}%" if peak else "n/a"
            results[share] = seconds
            notes.append(f"{prefix} + {tail} {mode}: step times {', '.join(f'{t:.3f}' for t in times)} s")
            print(f"| {prefix} + {tail} (×2) | {mode} | {seconds:.3f} | "
                  f"{(len(chosen) + len(rejected)) / seconds:,.0f} | {mem:.1f} | {mfu} |")
            if args.profile:
                wall, kinds, top = profile_step(model, chosen, rejected, share, device)
                busy = sum(kinds.values())
                notes.append(f"{prefix} + {tail} {mode}, profiled step: wall {wall:.3f} s, kernels {busy:.3f} s: "
                             + "; ".join(f"{k} {v:.3f} s" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])))
                notes.extend(f"    {seconds:.3f} s  {name[:110]}" for seconds, name in top)
        if len(results) == 2:
            print(f"| | **speed-up from sharing the prefix** | **{results[False] / results[True]:.2f}×** | | | |")
    print()
    for note in notes:
        print(f"- {note}" if not note.startswith("    ") else note)


if __name__ == "__main__":
    main()
