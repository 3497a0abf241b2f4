"""Decode rate against context length, on the llama-server our llamacpp runtime starts (same binary, weights and
flags): 1 and 8 sequences, each on its own slot with its prompt already cached, decoding 128 tokens at once.

Why: the agent workload's conversations grow to ~4k tokens, and every decode step of every sequence reads its
whole KV cache, so the rate at 8 conversations falls as they grow. This separates that cost from prefill and
from our front. Prints one JSON line per point; the baseline is the same server at the shortest context.

Usage: npm run bench:decode-context   (BENCH_THREADS=1|2, BENCH_CONTEXTS=64,1024,2048,4096, BENCH_DTYPE=auto)
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from entropo_engine.config import ServeConfig  # noqa: E402
from entropo_engine.llamacpp import LlamaCppHost  # noqa: E402

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
CONTEXTS = [int(x) for x in os.environ.get("BENCH_CONTEXTS", "64,1024,2048,4096").split(",")]
DTYPE = os.environ.get("BENCH_DTYPE", "auto")
DECODE = 128


def main() -> None:
    host = LlamaCppHost(ServeConfig(runtime="llamacpp", threads=THREADS, dtype=DTYPE, max_running=8, port=0))
    host.start()
    print(json.dumps({"threads": THREADS, "dtype": DTYPE, "slots": host.slots, "load": os.getloadavg()}), flush=True)
    rng = random.Random(0)
    vocab = len(host.tokenizer)

    def complete(prompt: list[int], slot: int, n_predict: int) -> dict:
        status, body = host._request("POST", "/completion", {"prompt": prompt, "n_predict": n_predict, "ignore_eos": True, "temperature": 0,
                                                              "cache_prompt": True, "id_slot": slot})
        assert status == 200, body
        return body

    baseline = {}
    try:
        for context in CONTEXTS:
            for sequences in (1, 8):
                prompts = [[rng.randrange(1000, vocab) for _ in range(context)] for _ in range(sequences)]
                with ThreadPoolExecutor(sequences) as pool:
                    list(pool.map(lambda i: complete(prompts[i], i, 1), range(sequences)))  # prefill, not timed
                    started = time.perf_counter()
                    results = list(pool.map(lambda i: complete(prompts[i], i, DECODE), range(sequences)))
                    seconds = time.perf_counter() - started
                assert all(r["timings"]["cache_n"] >= context - 1 for r in results)  # only the decode was timed
                rate = sequences * DECODE / seconds
                baseline.setdefault(sequences, rate)
                print(json.dumps({"context": context, "sequences": sequences, "decode_tok_s": round(rate, 1),
                                  "vs_shortest_context": round(rate / baseline[sequences], 2)}), flush=True)
    finally:
        host.stop()
    print(json.dumps({"load_end": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main()
