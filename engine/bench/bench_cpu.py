"""CPU benchmark of the engine (`npm run bench:engine`), printed as Markdown for BENCHMARKS.md.

1. Training: EntroPO-DPO (our trainer, through its CLI) vs TRL's DPOTrainer on the same model
   (SmolLM2-135M, LoRA r8 all-linear), the same pairs and settings. Each runs in its own process so peak
   RSS is its own. tokens/s counts the chosen + rejected tokens of every pair processed (the same count
   for both), over training time including reference log-probs (ours: computed once up front; TRL: a
   reference forward per step with the adapter disabled), excluding model loading and tokenisation.
2. Server: tokens/s of greedy generation through HTTP (/v1/chat/completions) vs `model.generate` called
   directly in this process on the same prompts (the server's overhead ratio).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ENGINE))

PAIRS = int(os.environ.get("BENCH_PAIRS", 8))
STEPS = int(os.environ.get("BENCH_STEPS", 4))
BATCH = 2


def trajectory(variant: int, turns: int) -> list[dict]:
    """A multi-turn agent trajectory with a realistic shared prefix (system prompt + issue text)."""
    system = "You are a software engineering agent working in a repository. " * 12
    issue = ("pluralize('box') returns 'boxs' instead of 'boxes'. Expected words ending in x, s, z, ch and sh to take 'es'. " * 6)
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": issue}]
    for t in range(turns):
        msgs.append({"role": "assistant", "content": f"Let me look at the code. <function=bash>grep -rn 'def pluralize' src/ # {variant}.{t}</function>"})
        msgs.append({"role": "tool", "content": f"src/inflection/__init__.py:{100 + 7 * t + variant}: def pluralize(word):\n" * 4})
    msgs.append({"role": "assistant", "content": f"<function=submit>patch {variant}</function>"})
    return msgs


def write_pairs(path: Path) -> None:
    with path.open("w") as f:
        for i in range(PAIRS):
            f.write(json.dumps({"id": f"p{i}", "prompt": trajectory(i, 0)[:2], "chosen": trajectory(i, 3)[2:], "rejected": trajectory(100 + i, 2)[2:]}) + "\n")


def pair_tokens(tokenizer, path: Path) -> list[int]:
    from entropo_engine.data import read_records, tokenize_messages

    return [len(tokenize_messages(tokenizer, r.chosen)) + len(tokenize_messages(tokenizer, r.rejected)) for r in read_records(path)]


TRL_SCRIPT = r"""
import json, resource, sys, time
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer
model_dir, data, out, steps, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rows = [json.loads(l) for l in open(data)]
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
args = DPOConfig(output_dir=out, per_device_train_batch_size=batch, max_steps=steps, learning_rate=1e-5, warmup_steps=0.1,
                 beta=0.1, loss_type=["sigmoid"], report_to=[], use_cpu=True, max_length=4096, logging_steps=1, save_strategy="no",
                 dataloader_num_workers=0)
peft = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows]),
                     processing_class=tok, peft_config=peft)
t = time.perf_counter()
trainer.train()
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_ours(model_dir: Path, data: Path, work: Path) -> dict:
    cfg = work / "ours.json"
    cfg.write_text(json.dumps({
        "mode": "entropo-dpo", "model": str(model_dir), "output_dir": str(work / "ours"), "data": {"path": str(data)},
        "lora": {"rank": 8, "alpha": 16}, "optim": {"batch_size": BATCH, "max_steps": STEPS, "lr": 1e-5}, "checkpoint_every": 10_000,
    }))
    out = subprocess.run([sys.executable, "-m", "entropo_engine", "train", "--config", str(cfg)], cwd=ENGINE, capture_output=True, text=True, check=True)
    events = [json.loads(line) for line in out.stdout.splitlines()]
    ref_seconds = next(e["seconds"] for e in events if e["event"] == "reference" and "seconds" in e)
    steps = [e for e in events if e["event"] == "step"]
    step_seconds = sum(e["tokens"] / e["tokens_per_s"] for e in steps)
    metrics = json.loads((work / "ours" / "metrics.json").read_text())
    return {"seconds": ref_seconds + step_seconds, "peak_rss_mb": metrics["peak_memory_mb"], "steps": steps}


def run_trl(model_dir: Path, data: Path, work: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", TRL_SCRIPT, str(model_dir), str(data), str(work / "trl"), str(STEPS), str(BATCH)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"TRL run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_training(model_dir: Path, tokenizer, work: Path) -> list[str]:
    data = work / "pairs.jsonl"
    write_pairs(data)
    from entropo_engine.examples import schedule

    per_pair = pair_tokens(tokenizer, data)
    tokens = sum(per_pair[i] for batch in schedule(len(per_pair), BATCH, 0, 1, STEPS) for i in batch)
    ours = run_ours(model_dir, data, work)
    shared = [s["tokens"] for s in ours["steps"]]
    trl = run_trl(model_dir, data, work)
    ours_tps, trl_tps = tokens / ours["seconds"], tokens / trl["seconds"]
    return [
        f"Training, {STEPS} steps × {BATCH} pairs ({tokens} chosen+rejected tokens, {sum(shared)} after prefix sharing), SmolLM2-135M fp32, LoRA r8 all-linear:",
        "",
        "| trainer | seconds | tokens/s | peak RSS (MB) |",
        "| --- | ---: | ---: | ---: |",
        f"| EntroPO-DPO (ours, shared prefix, reference once) | {ours['seconds']:.1f} | {ours_tps:.0f} | {ours['peak_rss_mb']:.0f} |",
        f"| TRL DPOTrainer (sigmoid) | {trl['seconds']:.1f} | {trl_tps:.0f} | {trl['peak_rss_mb']:.0f} |",
        f"| **ratio ours / TRL** | | **{ours_tps / trl_tps:.2f}×** | {ours['peak_rss_mb'] / trl['peak_rss_mb']:.2f}× |",
        "",
    ]


def bench_server(model_dir: Path, tokenizer, work: Path) -> list[str]:
    import torch
    from entropo_engine.models import load_causal_lm

    prompts = [f"Write a Python function that checks whether {n} is prime." for n in (7, 11, 13, 17)]
    max_tokens = 48
    model = load_causal_lm(model_dir, torch.device("cpu"), torch.float32).eval()
    direct_tokens, t = 0, time.perf_counter()
    for p in prompts:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, return_dict=True, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(input_ids=ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        direct_tokens += out.shape[1] - ids.shape[1]
    direct_tps = direct_tokens / (time.perf_counter() - t)
    del model

    cfg = work / "serve.json"
    cfg.write_text(json.dumps({"model": str(model_dir), "port": 0}))
    proc = subprocess.Popen([sys.executable, "-m", "entropo_engine", "serve", "--config", str(cfg)], cwd=ENGINE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = json.loads(proc.stdout.readline())["url"]
    served_tokens, t = 0, time.perf_counter()
    for p in prompts:
        body = json.dumps({"model": "smollm2-135m", "messages": [{"role": "user", "content": p}], "max_tokens": max_tokens, "temperature": 0}).encode()
        req = urllib.request.Request(f"{url}/chat/completions", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            served_tokens += json.loads(r.read())["usage"]["completion_tokens"]
    served_tps = served_tokens / (time.perf_counter() - t)
    proc.terminate()
    proc.wait()
    return [
        f"Server, greedy, {len(prompts)} requests × ≤{max_tokens} tokens, SmolLM2-135M fp32:",
        "",
        "| path | tokens | tokens/s |",
        "| --- | ---: | ---: |",
        f"| `model.generate` in-process (baseline) | {direct_tokens} | {direct_tps:.1f} |",
        f"| HTTP `/v1/chat/completions` | {served_tokens} | {served_tps:.1f} |",
        f"| **ratio served / direct** | | **{served_tps / direct_tps:.2f}×** |",
        "",
    ]


def main() -> None:
    from entropo_engine.models import load_tokenizer, resolve_model_dir

    model_dir = resolve_model_dir("smollm2-135m")
    tokenizer = load_tokenizer(model_dir)
    lines = [f"Machine: {os.cpu_count()} CPUs, torch {__import__('torch').__version__}, {time.strftime('%Y-%m-%d')}", ""]
    with tempfile.TemporaryDirectory() as tmp:
        lines += bench_training(model_dir, tokenizer, Path(tmp))
        lines += bench_server(model_dir, tokenizer, Path(tmp))
    lines.append(f"(this script's own peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
