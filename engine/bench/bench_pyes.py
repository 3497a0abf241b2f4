"""Verifier P(YES) from the llamacpp runtime vs the fp32 PyTorch scorer, and whether the hybrid selector's keep
decision (p >= η, η = 0.01; DESIGN.md §7) changes. Markdown on stdout, progress on stderr.

  .venv/bin/python engine/bench/bench_pyes.py [--dtypes auto,float32] [--models base,4,final] [--work /tmp/pyes]

Data: real runs' verifier records (`.entropo/runs/RUN/pairing/verifier.jsonl`, system messages dropped: the
verifier's transcript leaves them out). A verifier adapter is trained on --train with `entropo_engine train`,
a checkpoint every --every steps. Test: --test minus anything in training, cut to --max-length prompt tokens
by the engine's cut_middle. Several models (base, checkpoints, final) spread P(YES), so that some points may
come near η. Scorer: the engine's fp32 `next_token_logprobs` on `verifier_prompt_ids` (= `verifier_probability`,
checked). Server: `serve` runtime llamacpp, one per (dtype, model), chat request with the scorer's messages,
max_tokens 1, top_logprobs 20, token ids. Scorer (1 torch thread) and server run at the same time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ENGINE = Path(__file__).resolve().parents[1]
RUNS = ENGINE.parent / ".entropo" / "runs"
sys.path.insert(0, str(ENGINE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from entropo_engine.data import SkipRecord, TruncationReport, answer_token_ids, fit_to_length, verifier_messages  # noqa: E402
from entropo_engine.examples import _kept_messages, verifier_prompt_ids  # noqa: E402
from entropo_engine.logprobs import next_token_logprobs  # noqa: E402
from entropo_engine.models import load_causal_lm, load_tokenizer, resolve_model_dir  # noqa: E402
from entropo_engine.scoring import verifier_probability  # noqa: E402

ETA = 0.01
LOGIT_ETA = math.log(ETA / (1 - ETA))


def read(run: str) -> list[dict]:
    rows = [json.loads(line) for line in (RUNS / run / "pairing" / "verifier.jsonl").read_text().splitlines() if line.strip()]
    return [{"id": r["id"], "resolved": r["resolved"], "messages": [m for m in r["messages"] if m["role"] != "system"]} for r in rows]


def build_data(args, tok) -> tuple[Path, list[dict]]:
    train = [r for run in args.train.split(",") for r in read(run)]
    seen = {json.dumps(r["messages"]) for r in train}
    test, report = [], TruncationReport()
    overhead = len(verifier_prompt_ids(tok, [])) + 8  # as the trainer leaves room for the judge's instructions
    for r in read(args.test):
        if json.dumps(r["messages"]) in seen:
            continue
        try:
            cut = fit_to_length(tok, r["messages"], args.max_length - overhead, "cut_middle", r["id"], report)
        except SkipRecord:
            continue
        kept = _kept_messages(r["messages"], cut)
        ids = verifier_prompt_ids(tok, kept)  # here, not in the server thread: a tokenizer is not thread-safe
        chat_ids = tok.apply_chat_template(verifier_messages(kept), add_generation_prompt=True, return_dict=True)["input_ids"]
        test.append(r | {"messages": kept, "ids": ids, "same_ids": chat_ids == ids})
    path = args.work / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in train))
    return path, test[: args.n_test]


def train(args, data: Path) -> Path:
    out = args.work / "verifier"
    if (out / "adapter" / "adapter_model.safetensors").exists():
        return out
    cfg = {"mode": "verifier", "output_dir": str(out), "data": {"path": str(data), "max_length": args.max_length},
           "optim": {"batch_size": args.batch, "max_steps": args.steps, "lr": args.lr, "warmup_ratio": 0.0},
           "checkpoint_every": args.every, "keep_checkpoints": args.steps, "seed": 0}
    (args.work / "train.json").write_text(json.dumps(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "entropo_engine", "train", "--config", str(args.work / "train.json")],
                            cwd=ENGINE, stdout=subprocess.PIPE, text=True)
    for e in map(json.loads, proc.stdout):
        if e["event"] == "step":
            print(f"[train] step {e['step']}/{e['total_steps']} loss {e['loss']:.3f} accuracy {e.get('accuracy')}", file=sys.stderr)
    if proc.wait() != 0:
        sys.exit(f"training failed (exit {proc.returncode})")
    return out


def model_dirs(args, out: Path) -> dict[str, Path | None]:
    """name -> PEFT adapter dir (None: the base model). A checkpoint's adapter.safetensors is the PEFT state dict."""
    dirs: dict[str, Path | None] = {}
    for name in args.models.split(","):
        if not name.isdigit():
            dirs[name] = {"base": None, "final": out / "adapter"}[name]
            continue
        dirs[f"step{name}"] = d = args.work / f"step{name}"
        d.mkdir(exist_ok=True)
        shutil.copy(out / "adapter" / "adapter_config.json", d)
        shutil.copy(out / "checkpoints" / f"step-{int(name):07d}" / "adapter.safetensors", d / "adapter_model.safetensors")
    return dirs


def scorer(tok, dirs, test) -> dict[str, list[torch.Tensor]]:
    """fp32 log-probs over the vocabulary at the answer position, per model and example."""
    from peft import PeftModel

    model = load_causal_lm(resolve_model_dir("smollm2-135m"), torch.device("cpu"), torch.float32)
    adapters = {n: d for n, d in dirs.items() if d is not None}
    if adapters:
        (first, d0), *rest = adapters.items()
        model = PeftModel.from_pretrained(model, d0, adapter_name=first)
        for n, d in rest:
            model.load_adapter(d, adapter_name=n)
    model.eval()
    yes, no = answer_token_ids(tok)
    out = {}
    with torch.no_grad():
        for name in dirs:
            if name in adapters:
                model.set_adapter(name)
            with model.disable_adapter() if name not in adapters and adapters else contextlib.nullcontext():
                out[name] = [next_token_logprobs(model, r["ids"]) for r in test]
                check = verifier_probability(model, tok, test[0]["messages"])  # the engine's own function agrees
                assert abs(check - float(torch.sigmoid(out[name][0][yes] - out[name][0][no]))) < 1e-6, (name, check)
            print(f"[scorer] {name} done", file=sys.stderr)
    return out


def served(args, tok, dtype: str, name: str, adapter: Path | None, test) -> list[dict]:
    """Top-20 log-probs {token id: logprob} at the answer position from a llamacpp server, plus prompt-token checks."""
    cfg = {"port": 0, "runtime": "llamacpp", "dtype": dtype, "threads": args.threads, "max_running": 1, "kv_cache_tokens": 8192,
           "adapters": {name: str(adapter)} if adapter else {}}
    path = args.work / f"serve-{dtype}-{name}.json"
    path.write_text(json.dumps(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "entropo_engine", "serve", "--config", str(path)], cwd=ENGINE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = json.loads(proc.stdout.readline())["url"]
        rows = []
        for r in test:
            msgs = verifier_messages(r["messages"])
            body = {"model": name if adapter else "smollm2-135m", "messages": msgs, "max_tokens": 1, "temperature": 0,
                    "logprobs": True, "top_logprobs": 20, "return_tokens_as_token_ids": True, "ignore_eos": True}
            req = urllib.request.Request(f"{url}/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
            resp = json.loads(urllib.request.urlopen(req, timeout=3600).read())
            top = resp["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            rows.append({"top": {int(t["token"].split(":")[1]): t["logprob"] for t in top},
                         "prompt_ok": r["same_ids"] and resp["usage"]["prompt_tokens"] == len(r["ids"])})
        print(f"[llamacpp {dtype}] {name} done", file=sys.stderr)
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x > -700 else 0.0


def summary(tok, name: str, lps: list[torch.Tensor], rows: list[dict]) -> str:
    """One table row. p >= η is the selector's keep decision; log-odds = log P(YES) - log P(NO)."""
    yes, no = answer_token_ids(tok)
    lo_s = [float(lp[yes] - lp[no]) for lp in lps]
    d_p, d_lo, delta, flips, missing = [], [], 0.0, 0, 0
    for lp, lo, row in zip(lps, lo_s, rows):
        delta = max([delta] + [abs(v - float(lp[t])) for t, v in row["top"].items()])
        if yes not in row["top"] or no not in row["top"]:
            missing += 1
            continue
        lo_r = row["top"][yes] - row["top"][no]
        d_p.append(abs(sigmoid(lo_r) - sigmoid(lo)))
        d_lo.append(abs(lo_r - lo))
        flips += (sigmoid(lo) >= ETA) != (sigmoid(lo_r) >= ETA)
    dist = [abs(lo - LOGIT_ETA) for lo in lo_s]
    fmt = lambda xs: f"{max(xs):.1e}" if xs else "-"  # noqa: E731
    return (f"| {name} | {len(rows)} | {sigmoid(min(lo_s)):.2e} – {sigmoid(max(lo_s)):.2e} | {delta:.1e} | {fmt(d_p)} | {fmt(d_lo)} | "
            f"**{flips}** | {min(dist):.2f} | {sum(d <= 2 * delta for d in dist)} | {sum(d <= math.log(10) for d in dist)} | "
            f"{missing} | {sum(not r['prompt_ok'] for r in rows)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, default, help_text in (
        ("--work", Path("/tmp/pyes"), "scratch dir (a trained adapter there is reused)"),
        ("--train", "quickstart,dbg3", "runs whose verifier records train the verifier"), ("--test", "quickstart-2", "the test run"),
        ("--n-test", 48, ""), ("--max-length", 768, "tokens of a verifier prompt"), ("--steps", 8, ""), ("--batch", 2, ""),
        ("--lr", 1e-3, ""), ("--every", 2, "checkpoint every N steps"), ("--models", "base,4,final", "base, checkpoint steps, final"),
        ("--dtypes", "auto,float32", "llamacpp dtypes: auto (F16), float32"), ("--threads", 1, "llama-server threads"),
    ):
        ap.add_argument(flag, type=type(default), default=default, help=help_text)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    torch.set_num_threads(1)
    tok = load_tokenizer(resolve_model_dir("smollm2-135m"))
    data, test = build_data(args, tok)
    out = train(args, data)
    trained = time.time()
    dirs = model_dirs(args, out)
    server: dict[tuple[str, str], list[dict]] = {}

    def serve_all():
        for dtype in args.dtypes.split(","):
            for name, d in dirs.items():
                server[dtype, name] = served(args, tok, dtype, name, d, test)

    with ThreadPoolExecutor(1) as pool:  # the server's requests and the scorer at the same time
        served_all = pool.submit(serve_all)
        lps = scorer(tok, dirs, test)
        served_all.result()
    n_res = sum(r["resolved"] for r in test)
    print(f"## Verifier P(YES): llamacpp runtime vs the fp32 scorer (η = {ETA})\n")
    print(f"Test set: {len(test)} verifier prompts from run `{args.test}` ({n_res} resolved), {min(len(r['ids']) for r in test)}–{max(len(r['ids']) for r in test)} prompt tokens, "
          f"none in training (`{args.train}`: {sum(1 for _ in data.open())} trajectories, {args.steps} steps × {args.batch}, lr {args.lr}).\n")
    print("δ: max |Δ log-prob| over the served top-20 tokens. Margin: min |log-odds − logit(η)| of the scorer's P(YES). "
          "In band: scorer P(YES) within η·e^{±2δ} (odds), the only ones a log-prob error of δ could flip. "
          "Near: scorer odds within ×10 of η's. Missing: YES or NO not in the served top 20. Prompt ≠: chat-template ids or usage.prompt_tokens differ from the scorer's.\n")
    print("| runtime | model | n | scorer P(YES) min – max | δ | max abs ΔP(YES) | max abs Δ log-odds | flips at η | margin (nats) | in band | near | missing | prompt ≠ |")
    print("|" + " --- |" * 13)
    for dtype in args.dtypes.split(","):
        label = f"| llamacpp {'F16' if dtype == 'auto' else 'F32'} "
        for name in dirs:
            print(label + summary(tok, name, lps[name], server[dtype, name]))
        print(label + summary(tok, "**all**", [x for n in dirs for x in lps[n]], [x for n in dirs for x in server[dtype, n]]))
    print(f"\nCommand: `.venv/bin/python engine/bench/bench_pyes.py {' '.join(sys.argv[1:])}`; training {trained - start:.0f} s, "
          f"total {time.time() - start:.0f} s (2 shared CPU cores).")


if __name__ == "__main__":
    main()
