"""The trainer end to end on a GPU, plain vs `compile_layers: true` (`npm run bench:train-gpu`), as Markdown.

Builds a model of a realistic shape with random weights (default Qwen3-4B-like, bf16) around a real
tokenizer, writes preference pairs of long multi-turn trajectories, and runs `python -m entropo_engine
train` (EntroPO-DPO, LoRA r8, gradient checkpointing) twice on the same data: once plain, once with each
decoder layer compiled. Reports each job's first step (compilation lands there), its later steps' median
tokens/s, the per-step losses side by side, and whether it compiled (`compiled_graphs` in metrics.json).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ENGINE))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu import SHAPES  # noqa: E402

WORDS = "def return self value index list patch error test file import class None True False raise".split()


def write_model(tokenizer_dir: str, shape: str, out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(**{**SHAPES[shape], "vocab_size": len(tokenizer)}, max_position_embeddings=65536, rope_theta=1e6)
    torch.manual_seed(0)
    on_gpu = torch.cuda.is_available()  # without one (a check of the script), float32 on the CPU
    with torch.device("cuda" if on_gpu else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16 if on_gpu else torch.float32)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def trajectory(rng: random.Random, prefix: list[dict], turns: int, words: int) -> list[dict]:
    msgs = list(prefix)
    for _ in range(turns):
        msgs.append({"role": "assistant", "content": " ".join(rng.choice(WORDS) for _ in range(words))})
        msgs.append({"role": "tool", "content": " ".join(rng.choice(WORDS) for _ in range(words))})
    msgs.append({"role": "assistant", "content": "<function=submit></function>"})
    return msgs


def write_pairs(path: Path, pairs: int, turns: int, words: int) -> None:
    rng = random.Random(0)
    rows = []
    for i in range(pairs):
        prefix = [{"role": "system", "content": " ".join(rng.choice(WORDS) for _ in range(words * 4))},
                  {"role": "user", "content": f"task {i}: " + " ".join(rng.choice(WORDS) for _ in range(words * 4))}]
        rows.append({"id": f"p{i}", "chosen": trajectory(rng, prefix, turns, words), "rejected": trajectory(rng, prefix, turns, words)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def train(model: Path, data: Path, out: Path, steps: int, compiled: bool, max_length: int) -> dict:
    cfg = {"mode": "entropo-dpo", "model": str(model), "output_dir": str(out), "data": {"path": str(data), "max_length": max_length},
           "gradient_checkpointing": True, "compile_layers": compiled, "checkpoint_every": 1000,
           "lora": {"rank": 8, "alpha": 16, "dropout": 0.0}, "optim": {"batch_size": 1, "max_steps": steps, "lr": 1e-5, "warmup_ratio": 0.0}}
    config = out.with_suffix(".json")
    config.write_text(json.dumps(cfg))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "entropo_engine", "train", "--config", str(config)], cwd=ENGINE,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"train (compile_layers={compiled}) failed:\n{proc.stderr[-3000:]}")
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall": time.perf_counter() - started, "steps": [e for e in events if e["event"] == "step"],
            "graphs": metrics["compiled_graphs"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", help="a tokenizer directory (default: the shipped SmolLM2's)")
    parser.add_argument("--shape", default="4b", choices=sorted(SHAPES))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--turns", type=int, default=40, help="agent turns per trajectory")
    parser.add_argument("--words", type=int, default=40, help="words per message")
    args = parser.parse_args()
    tokenizer = args.tokenizer
    if tokenizer is None:
        from entropo_engine.models import resolve_model_dir

        tokenizer = str(resolve_model_dir("smollm2-135m"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_model(tokenizer, args.shape, root / "model")
        print(f"model {args.shape} (random weights, bf16) written in {time.perf_counter() - started:.0f} s")
        write_pairs(root / "pairs.jsonl", args.steps, args.turns, args.words)
        runs = {c: train(root / "model", root / "pairs.jsonl", root / f"out-{c}", args.steps, c, 65536) for c in (False, True)}
    tokens = [s["tokens"] for s in runs[False]["steps"]]
    print(f"\n{args.steps} EntroPO-DPO steps, 1 pair each, {min(tokens)}–{max(tokens)} tokens per step (after prefix sharing)\n")
    print("| compile_layers | job wall s | first step s | later steps: median tokens/s | compiled graphs |")
    print("| --- | ---: | ---: | ---: | ---: |")
    medians = {}
    for compiled, run in runs.items():
        steps = run["steps"]
        first = steps[0]["tokens"] / steps[0]["tokens_per_s"]
        later = sorted(s["tokens_per_s"] for s in steps[1:])
        medians[compiled] = later[len(later) // 2]
        print(f"| {str(compiled).lower()} | {run['wall']:.0f} | {first:.1f} | {medians[compiled]:,.0f} | {run['graphs']} |")
    print(f"| **compiled / plain** | | | **{medians[True] / medians[False]:.2f}×** | |\n")
    for a, b in zip(runs[False]["steps"], runs[True]["steps"]):
        print(f"- step {a['step']}: loss plain {a['loss']:.6f}, compiled {b['loss']:.6f}")


if __name__ == "__main__":
    main()
