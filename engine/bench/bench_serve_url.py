"""The agent workload of `bench_serve.py`, pointed at any OpenAI-compatible server already running (e.g. llama.cpp's
`llama-server`), so another runtime is measured with exactly our workload. Prints one JSON line per measure.

Usage: .venv/bin/python engine/bench/bench_serve_url.py http://127.0.0.1:8091/v1 LABEL
Sizes as in bench_serve.py: BENCH_CONVS, BENCH_TURNS, BENCH_ADD, BENCH_COMPLETION, BENCH_DECODE, BENCH_COLD.
Run `bench_serve.py` with the same sizes in the same session for our server's figures (the ratio).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_serve as workload  # noqa: E402


class UrlServer:
    """`bench_serve.Server`'s `chat`, against a URL; llama-server's `timings` become our `timing` field."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def chat(self, messages: list[dict], max_tokens: int) -> tuple[dict, float]:
        body = {"model": "smollm2-135m", "messages": messages, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
        request = urllib.request.Request(f"{self.url}/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=3600) as response:
            out = json.loads(response.read())
        seconds = time.perf_counter() - started
        if "timings" in out:
            out["timing"] = {"time_to_first_token_s": out["timings"]["prompt_ms"] / 1000}
            out["usage"].setdefault("prompt_tokens_details", {})["cached_tokens"] = out["timings"].get("cache_n", 0)
        message = out["choices"][0]["message"]  # the next turn carries role and content only
        out["choices"][0]["message"] = {"role": message["role"], "content": message.get("content") or ""}
        return out, seconds


def main() -> None:
    url, label = sys.argv[1], sys.argv[2]
    server = UrlServer(url)
    print(json.dumps({"label": label, "url": url, "load": os.getloadavg()}), flush=True)
    server.chat([{"role": "user", "content": "hi"}], 4)  # warm-up
    print(json.dumps({"decode_tok_s": workload.single_decode(server)}), flush=True)
    tokens, seconds = workload.cold_prefill(server)
    print(json.dumps({"cold_prompts": workload.COLD, "prefill_tok_s": tokens / seconds}), flush=True)
    for convs in workload.CONVS:
        result = workload.agent_workload(server, convs, probe_ttft=False)
        print(json.dumps({"conversations": convs, "completion_tok_s": result["tokens"] / result["seconds"], **result}), flush=True)
    print(json.dumps({"load_end": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main()
