"""Serving benchmark for agent rollouts (`npm run bench:serve`), printed as Markdown for BENCHMARKS.md.

One run measures, on the same machine, one after another, with the same environment (OMP_WAIT_POLICY=PASSIVE; the llamacpp runtime does not pass it on to llama-server):
  - the baseline, "today's server" of the issue: the engine before batching (`git archive BENCH_BASELINE_REV
    engine`, default b2bbd84^, whose server runs one request at a time through HF `generate`);
  - this tree's server, runtime torch (batched PyTorch, prefix_cache_mb 4096), at BENCH_TORCH_CONVS;
  - this tree's server, runtime llamacpp (llama-server, F16, BENCH_LLAMA_THREADS threads), at BENCH_CONVS.
Measures (the issue's list; completion tokens only, TTFT and decode rate apart):
1. Agent workload: C concurrent conversations × T turns; each turn adds ~ADD prompt tokens (a tool
   observation) and asks for COMPLETION tokens (greedy, ignore_eos so every turn generates them all; the
   baseline has no ignore_eos and may stop early, only generated tokens are counted). Completion tokens/s
   aggregate, time to first token (TTFT) per turn. TTFT on this tree's server is its own `timing` field;
   the baseline has no streaming, so its TTFT is the latency of the same prompt with max_tokens=1 (cold: it
   has no cache). The issue's target: from turn 3 on, TTFT with prefix reuse >= 5× faster than cold.
2. One request: decode rate (short prompt, DECODE tokens).
3. Cold prompts: COLD distinct ~1.5k-token prompts at once, max_tokens=1: prefill tokens/s, and its fraction
   of this machine's measured fp32 matmul peak (0.27 GFLOP per token for SmolLM2-135M, whatever the precision).
4. Peak RSS of each server: VmHWM of the server process plus its descendants (llama-server for llamacpp).
Env: BENCH_BASELINE_REV (b2bbd84^), BENCH_CONVS (llamacpp, "1,4,8"), BENCH_TORCH_CONVS (torch, "8": it is
slow), BENCH_OLD_CONVS (1: the baseline is serial, so more conversations only divide its rate), BENCH_TURNS (4),
BENCH_ADD (200), BENCH_COMPLETION (32), BENCH_COLD (4), BENCH_DECODE (32), BENCH_LLAMA_THREADS (1).
The issue's full workload: BENCH_CONVS=1,4,8,16 BENCH_TORCH_CONVS=8 BENCH_TURNS=10 BENCH_COMPLETION=128 BENCH_COLD=8.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1]
REPO = ENGINE.parent
BASELINE_REV = os.environ.get("BENCH_BASELINE_REV", "b2bbd84^")
CONVS = [int(x) for x in os.environ.get("BENCH_CONVS", "1,4,8").split(",")]
TORCH_CONVS = [int(x) for x in os.environ.get("BENCH_TORCH_CONVS", "8").split(",")]
TURNS = int(os.environ.get("BENCH_TURNS", 4))
ADD = int(os.environ.get("BENCH_ADD", 200))
COMPLETION = int(os.environ.get("BENCH_COMPLETION", 32))
OLD_CONVS = int(os.environ.get("BENCH_OLD_CONVS", 1))
COLD = int(os.environ.get("BENCH_COLD", 4))
DECODE = int(os.environ.get("BENCH_DECODE", 32))
LLAMA_THREADS = int(os.environ.get("BENCH_LLAMA_THREADS", 1))
GFLOP_PER_TOKEN = 0.27
SERVER_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "ENTROPO_HOME": str(REPO / ".entropo")}


def observation(conv: int, turn: int, words: int) -> str:
    """A tool observation of roughly `words` tokens (~37 per line), distinct per conversation and turn."""
    lines = [f"src/module_{conv}/file_{turn}_{i}.py:{17 * i + turn}: def helper_{conv}_{turn}_{i}(value): return value * {i}" for i in range(max(1, round(words / 37)))]
    return "\n".join(lines)


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from every thread's children list (a thread that spawned a process is its parent)."""
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def _vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server:
    def __init__(self, engine_dir: Path, work: Path, name: str, extra: dict):
        self.config = {"model": "smollm2-135m", "port": 0, **extra}
        cfg = work / f"{name}.json"
        cfg.write_text(json.dumps(self.config))
        self.log = work / f"{name}.stderr"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "entropo_engine", "serve", "--config", str(cfg)], cwd=engine_dir,
                                         stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, **SERVER_ENV})
        line = self.proc.stdout.readline()
        if not line:
            tail = "\n".join(self.log.read_text().splitlines()[-20:])
            raise SystemExit(f"server '{name}' exited with code {self.proc.wait()} before listening:\n{tail}")
        self.url = json.loads(line)["url"]

    def chat(self, messages: list[dict], max_tokens: int) -> tuple[dict, float]:
        body = {"model": "smollm2-135m", "messages": messages, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
        req = urllib.request.Request(f"{self.url}/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=3600) as r:
            out = json.loads(r.read())
        return out, time.perf_counter() - t

    def stats(self) -> dict | None:
        try:
            return json.loads(urllib.request.urlopen(f"{self.url[: -len('/v1')]}/stats").read())
        except OSError:  # the baseline has no /stats
            return None

    def peak_rss_mb(self) -> float:
        """Peak RSS of the server and every process under it (llama-server for runtime llamacpp), summed."""
        pids, total = [self.proc.pid], 0
        while pids:
            pid = pids.pop()
            total += _vm_hwm_kb(pid)
            pids += _children(pid)
        return total / 1024

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


def measure(name: str, engine_dir: Path, work: Path, extra: dict, convs: list[int], probe_ttft: bool) -> dict:
    """One server's part: decode, agent workload at each conversation count, cold prompts, peak RSS, load."""
    print(f"[bench] {name}: starting", file=sys.stderr, flush=True)
    load_start = os.getloadavg()[0]
    server = Server(engine_dir, work, name, extra)
    try:
        server.chat([{"role": "user", "content": "hi"}], 4)  # warm-up (first-call allocations)
        decode = single_decode(server)
        agent = {}
        for c in convs:
            print(f"[bench] {name}: {c} conversations", file=sys.stderr, flush=True)
            agent[c] = agent_workload(server, c, probe_ttft)
        cold_tokens, cold_s = cold_prefill(server)
        result = {"name": name, "config": server.config, "decode": decode, "agent": agent, "prefill": cold_tokens / cold_s,
                  "cold_tokens": cold_tokens, "stats": server.stats(), "rss": server.peak_rss_mb()}
    finally:
        server.stop()
    return {**result, "load": (load_start, os.getloadavg()[0])}


def machine() -> str:
    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.machine())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:"))
    return (f"{model}, {len(os.sched_getaffinity(0))} usable CPUs of {os.cpu_count()}, {mem / 2**20:.0f} GiB, {platform.platform()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads in this process)")


def report(env: str, base: dict, runs: list[dict], peak: float) -> str:
    ratio = lambda x, y: f"**{x / y:.2f}×**" if y else "—"  # noqa: E731
    rate = lambda r: r["tokens"] / r["seconds"]  # noqa: E731
    base_rate = rate(base["agent"][OLD_CONVS])
    lines = [f"Machine: {machine()}, {time.strftime('%Y-%m-%d %H:%M %Z')}",
             f"Env: `{env}`",
             f"Workload: {TURNS} turns, ~{ADD} prompt tokens added per turn, {COMPLETION} completion tokens per turn (greedy).", "",
             "| server | config | load average (1 min) at start → end |", "| --- | --- | --- |"]
    for r in [base, *runs]:
        lines.append(f"| {r['name']} | `{json.dumps(r['config'])}` | {r['load'][0]:.2f} → {r['load'][1]:.2f} |")

    counts = sorted({c for r in runs for c in r["agent"]})
    lines += ["", "Agent workload, aggregate completion tokens/s:", "",
              f"| conversations | baseline (serial, measured with {OLD_CONVS}) | " + " | ".join(r["name"] for r in runs) + " | "
              + " | ".join(f"{r['name']} / baseline" for r in runs) + " |",
              "| ---: " * (2 + 2 * len(runs)) + "|"]
    for c in counts:
        rates = [rate(r["agent"][c]) if c in r["agent"] else None for r in runs]
        lines.append(f"| {c} | {base_rate:.1f} | " + " | ".join("—" if x is None else f"{x:.1f}" for x in rates) + " | "
                     + " | ".join("—" if x is None else ratio(x, base_rate) for x in rates) + " |")

    # TTFT: every runtime at every count; cached tokens and speed-up vs the baseline's cold prefill at each runtime's fewest conversations.
    base_agent = base["agent"][OLD_CONVS]
    cols = [(r, c) for r in runs for c in r["agent"]]
    firsts = [(r, min(r["agent"])) for r in runs]
    lines += ["", f"Time to first token per turn (s): the baseline cold (mean over {OLD_CONVS} conversation(s)) vs this tree's runtimes with prefix reuse:", "",
              "| turn | prompt tokens (baseline) | baseline (cold) | " + " | ".join(f"{r['name']}, {c} conv." for r, c in cols) + " | "
              + " | ".join(f"{r['name']} cached / prompt tokens ({c} conv.)" for r, c in firsts) + " | "
              + " | ".join(f"speed-up {r['name']} ({c} conv.)" for r, c in firsts) + " |",
              "| ---: " * (3 + len(cols) + 2 * len(firsts)) + "|"]
    for t in range(TURNS):
        cold = base_agent["ttft"][t]
        lines.append(f"| {t + 1} | {base_agent['prompt'][t]:.0f} | {cold:.2f} | "
                     + " | ".join(f"{r['agent'][c]['ttft'][t]:.3f}" for r, c in cols) + " | "
                     + " | ".join(f"{r['agent'][c]['cached'][t]:.0f} / {r['agent'][c]['prompt'][t]:.0f}" for r, c in firsts) + " | "
                     + " | ".join(ratio(cold, r["agent"][c]["ttft"][t]) for r, c in firsts) + " |")
    if TURNS >= 3:
        lines += ["", "TTFT speed-up vs the baseline's cold prefill from turn 3 on (target >= 5×), min / mean over turns 3.."
                  f"{TURNS} of each turn's mean TTFT:", ""]
        for r, c in cols:
            ups = [base_agent["ttft"][t] / r["agent"][c]["ttft"][t] for t in range(2, TURNS)]
            lines.append(f"- {r['name']}, {c} conversations: min {min(ups):.1f}×, mean {sum(ups) / len(ups):.1f}× "
                         f"({'meets' if min(ups) >= 5 else 'misses'} the target)")

    gflops = lambda r: r["prefill"] * GFLOP_PER_TOKEN  # noqa: E731
    cell = lambda f, fmt: " | ".join(fmt.format(f(r)) for r in runs) + " | " + " | ".join(ratio(f(r), f(base)) for r in runs)  # noqa: E731
    lines += ["", "| measure | baseline | " + " | ".join(r["name"] for r in runs) + " | " + " | ".join(f"{r['name']} / baseline" for r in runs) + " |",
              "| --- " + "| ---: " * (1 + 2 * len(runs)) + "|",
              f"| one request, decode tokens/s ({DECODE} tokens) | {base['decode']:.1f} | " + cell(lambda r: r["decode"], "{:.1f}") + " |",
              f"| {COLD} cold ~{base['cold_tokens'] // COLD}-token prompts at once, prefill tokens/s | {base['prefill']:.0f} | "
              + cell(lambda r: r["prefill"], "{:.0f}") + " |",
              f"| prefill, % of the fp32 matmul peak ({peak:.0f} GFLOP/s, 2048² matmul, measured here) | {100 * gflops(base) / peak:.0f}% | "
              + cell(lambda r: 100 * gflops(r) / peak, "{:.0f}%") + " |",
              f"| peak RSS of the server, children included (MB) | {base['rss']:.0f} | " + cell(lambda r: r["rss"], "{:.0f}") + " |", ""]
    lines += [f"{r['name']} /stats at the end: `{json.dumps(r['stats'])}`" for r in runs]
    return "\n".join(lines)


def main() -> None:
    env = " ".join(f"{k}={v}" for k, v in {
        "BENCH_BASELINE_REV": BASELINE_REV, "BENCH_CONVS": ",".join(map(str, CONVS)), "BENCH_TORCH_CONVS": ",".join(map(str, TORCH_CONVS)),
        "BENCH_OLD_CONVS": OLD_CONVS, "BENCH_TURNS": TURNS, "BENCH_ADD": ADD, "BENCH_COMPLETION": COMPLETION, "BENCH_COLD": COLD,
        "BENCH_DECODE": DECODE, "BENCH_LLAMA_THREADS": LLAMA_THREADS, **SERVER_ENV}.items())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", BASELINE_REV, "engine"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
        base = measure("baseline", work / "engine", work, {}, [OLD_CONVS], probe_ttft=True)
        torch_run = measure("torch", ENGINE, work, {"runtime": "torch", "prefix_cache_mb": 4096}, TORCH_CONVS, probe_ttft=False)
        llama_run = measure("llamacpp", ENGINE, work, {"runtime": "llamacpp", "threads": LLAMA_THREADS}, CONVS, probe_ttft=False)
    print(report(env, base, [torch_run, llama_run], matmul_peak_gflops()))


if __name__ == "__main__":
    main()
