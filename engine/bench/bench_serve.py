"""Serving benchmark for agent rollouts (`npm run bench:serve`), printed as Markdown for BENCHMARKS.md.

Runs today's server (the `engine/` of git HEAD, HF `generate`, one request at a time) and this tree's
batched server in the same run, on the same machine, with the same environment (OMP_WAIT_POLICY=PASSIVE
for both), and reports ratios:
1. Agent workload: C concurrent conversations × T turns; each turn adds ~ADD prompt tokens (a tool
   observation) and asks for COMPLETION tokens (greedy, ignore_eos so every turn generates them all; today's
   server has no ignore_eos and may stop early, only generated tokens are counted). Completion tokens/s
   aggregate, time to first token (TTFT) per turn. TTFT on the batched server is its own `timing` field;
   today's server has no streaming, so its TTFT is the latency of the same prompt with max_tokens=1 (cold:
   it has no cache).
2. One request: decode rate (short prompt, DECODE tokens).
3. Cold prompts: COLD distinct ~1.5k-token prompts at once, max_tokens=1: prefill tokens/s, and its fraction
   of this machine's measured fp32 matmul peak (0.27 GFLOP per token for SmolLM2-135M).
4. Peak RSS of each server process.
Env: BENCH_CONVS (default "1,4,8"), BENCH_TURNS (4), BENCH_ADD (200), BENCH_COMPLETION (32),
BENCH_OLD_CONVS (1: today's server is serial, so more conversations only divide its rate), BENCH_COLD (4),
BENCH_DECODE (64). The issue's full workload: BENCH_CONVS=1,4,8,16 BENCH_TURNS=10 BENCH_COMPLETION=128.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1]
REPO = ENGINE.parent
CONVS = [int(x) for x in os.environ.get("BENCH_CONVS", "1,4,8").split(",")]
TURNS = int(os.environ.get("BENCH_TURNS", 4))
ADD = int(os.environ.get("BENCH_ADD", 200))
COMPLETION = int(os.environ.get("BENCH_COMPLETION", 32))
OLD_CONVS = int(os.environ.get("BENCH_OLD_CONVS", 1))
COLD = int(os.environ.get("BENCH_COLD", 4))
DECODE = int(os.environ.get("BENCH_DECODE", 32))
GFLOP_PER_TOKEN = 0.27


def observation(conv: int, turn: int, words: int) -> str:
    """A tool observation of roughly `words` tokens (~37 per line), distinct per conversation and turn."""
    lines = [f"src/module_{conv}/file_{turn}_{i}.py:{17 * i + turn}: def helper_{conv}_{turn}_{i}(value): return value * {i}" for i in range(max(1, round(words / 37)))]
    return "\n".join(lines)


class Server:
    def __init__(self, engine_dir: Path, work: Path, name: str, extra: dict):
        cfg = work / f"{name}.json"
        cfg.write_text(json.dumps({"model": "smollm2-135m", "port": 0, **extra}))
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "ENTROPO_HOME": str(REPO / ".entropo")}
        self.proc = subprocess.Popen([sys.executable, "-m", "entropo_engine", "serve", "--config", str(cfg)], cwd=engine_dir,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self.url = json.loads(self.proc.stdout.readline())["url"]

    def chat(self, messages: list[dict], max_tokens: int) -> tuple[dict, float]:
        body = {"model": "smollm2-135m", "messages": messages, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
        req = urllib.request.Request(f"{self.url}/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=3600) as r:
            out = json.loads(r.read())
        return out, time.perf_counter() - t

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def agent_workload(server: Server, convs: int, probe_ttft: bool) -> dict:
    """Runs `convs` conversations in parallel threads; returns completion tokens, seconds, TTFT per turn."""
    ttft = [[] for _ in range(TURNS)]
    cached = [[] for _ in range(TURNS)]
    prompt_len = [[] for _ in range(TURNS)]
    tokens = [0] * convs

    def run(c: int) -> None:
        messages = [{"role": "system", "content": "You are a software engineering agent. Call one tool per turn."}]
        for turn in range(TURNS):
            messages.append({"role": "user", "content": observation(c, turn, ADD)})
            if probe_ttft:
                _, seconds = server.chat(messages, 1)
                ttft[turn].append(seconds)
            out, _ = server.chat(messages, COMPLETION)
            if "timing" in out:
                ttft[turn].append(out["timing"]["time_to_first_token_s"])
                cached[turn].append(out["usage"]["prompt_tokens_details"]["cached_tokens"])
            prompt_len[turn].append(out["usage"]["prompt_tokens"])
            tokens[c] += out["usage"]["completion_tokens"]
            messages.append(out["choices"][0]["message"])

    threads = [threading.Thread(target=run, args=(c,)) for c in range(convs)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    seconds = time.perf_counter() - t
    if probe_ttft:  # the probes' own time is not generation time
        seconds -= sum(sum(x) for x in ttft) / convs
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {"tokens": sum(tokens), "seconds": seconds, "ttft": [mean(x) for x in ttft], "cached": [mean(x) if x else 0 for x in cached],
            "prompt": [mean(x) for x in prompt_len]}


def single_decode(server: Server) -> float:
    out, seconds = server.chat([{"role": "user", "content": "Write a long story about a robot."}], DECODE)
    first = out.get("timing", {}).get("time_to_first_token_s", 0.0)
    return (out["usage"]["completion_tokens"] - (1 if first else 0)) / (seconds - first)


def cold_prefill(server: Server) -> tuple[int, float]:
    prompts = [[{"role": "user", "content": observation(100 + k, 0, 1500)}] for k in range(COLD)]
    results = [None] * COLD

    def run(k):
        results[k] = server.chat(prompts[k], 1)[0]["usage"]["prompt_tokens"]

    threads = [threading.Thread(target=run, args=(k,)) for k in range(COLD)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(results), time.perf_counter() - t


def matmul_peak_gflops() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * 2048**3 / (time.perf_counter() - t) / 1e9)
    return best


def main() -> None:
    import torch

    lines = [f"Machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f} at start",
             f"Workload: turns {TURNS}, ~{ADD} prompt tokens added per turn, {COMPLETION} completion tokens per turn (greedy).", ""]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(f"git -C {REPO} archive HEAD engine | tar -x -C {work}", shell=True, check=True)
        old = Server(work / "engine", work, "old", {})
        old_single = single_decode(old)
        old_agent = agent_workload(old, OLD_CONVS, probe_ttft=True)
        old_cold_tokens, old_cold_s = cold_prefill(old)
        old_rss = old.peak_rss_mb()
        old.stop()
        new = Server(ENGINE, work, "new", {"prefix_cache_mb": 4096})
        new_single = single_decode(new)
        new_agent = {c: agent_workload(new, c, probe_ttft=False) for c in CONVS}
        new_cold_tokens, new_cold_s = cold_prefill(new)
        stats = json.loads(urllib.request.urlopen(f"{new.url[:-3]}/stats").read())
        new_rss = new.peak_rss_mb()
        new.stop()
    peak = matmul_peak_gflops()

    old_rate = old_agent["tokens"] / old_agent["seconds"]
    lines += ["Agent workload, aggregate completion tokens/s:", "",
              "| conversations | today's server (serial) | batched + prefix cache | ratio |", "| ---: | ---: | ---: | ---: |"]
    for c, r in new_agent.items():
        rate = r["tokens"] / r["seconds"]
        lines.append(f"| {c} | {old_rate:.1f} (measured with {OLD_CONVS}) | {rate:.1f} | **{rate / old_rate:.2f}×** |")
    lines += ["", f"Time to first token per turn (s), today's server cold (mean over {OLD_CONVS} conversation) vs batched with prefix reuse:", "",
              "| turn | prompt tokens | today's (cold) | " + " | ".join(f"batched, {c} conv." for c in CONVS) + " | cached tokens (1 conv.) | speed-up (1 conv.) |",
              "| ---: | ---: | ---: | " + " | ".join("---:" for _ in CONVS) + " | ---: | ---: |"]
    for turn in range(TURNS):
        one = new_agent[CONVS[0]]
        lines.append(f"| {turn + 1} | {old_agent['prompt'][turn]:.0f} | {old_agent['ttft'][turn]:.2f} | "
                     + " | ".join(f"{new_agent[c]['ttft'][turn]:.2f}" for c in CONVS)
                     + f" | {one['cached'][turn]:.0f} | **{old_agent['ttft'][turn] / one['ttft'][turn]:.1f}×** |")
    lines += ["", "| measure | today's server | batched server | ratio |", "| --- | ---: | ---: | ---: |",
              f"| one request, decode tokens/s ({DECODE} tokens) | {old_single:.1f} | {new_single:.1f} | **{new_single / old_single:.2f}×** |",
              f"| {COLD} cold ~{new_cold_tokens // COLD}-token prompts at once, prefill tokens/s | {old_cold_tokens / old_cold_s:.0f} | {new_cold_tokens / new_cold_s:.0f} | {old_cold_s / new_cold_s:.2f}× |",
              f"| peak RSS of the server (MB) | {old_rss:.0f} | {new_rss:.0f} | {new_rss / old_rss:.2f}× |", "",
              f"Prefill at {new_cold_tokens / new_cold_s:.0f} tokens/s is {new_cold_tokens / new_cold_s * GFLOP_PER_TOKEN:.0f} GFLOP/s, "
              f"{100 * new_cold_tokens / new_cold_s * GFLOP_PER_TOKEN / peak:.0f}% of the fp32 matmul peak measured here ({peak:.0f} GFLOP/s, 2048² matmul).",
              f"Prefix cache at the end: {json.dumps(stats['prefix_cache'])}"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
