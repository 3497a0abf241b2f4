"""The llama.cpp runtime (serve `runtime: llamacpp`) on the real SmolLM2-135M and a real llama-server built by
setup: batching and prefix reuse keep each request's answer, base and adapter requests in flight together get
their own model, a converted adapter changes the served log-probs as it changes the scorer's, the queue limit,
and llama-server's lifetime (restarted when it dies, never outliving the server).

Two precisions, with the tolerances measured on them (BENCHMARKS.md, "Engine inference"):
  - float32 (F32 weights and KV cache, no flash attention), the exact path: a request in a batch or on a
    cached prefix answers as it does alone on a cold server within 1e-4 (measured ~4e-6); against the fp32
    scorer within F32_VS_SCORER (measured ~2e-4: llama.cpp's kernels, not a bug of ours);
  - F16 (the default, 2-6x faster than the torch runtime): ~2e-3 between batched and alone, ~8e-3 against
    the scorer. Rollouts only sample from it; training and the verifier's P(YES) use the PyTorch scorer.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_server import call
from test_server_batching import USER, ask, model, scorer_logprobs, together, tokens_and_logprobs, user  # noqa: F401 (fixtures)
from test_trainer import ENGINE, write_config

F32_ALONE = 1e-4
F32_VS_SCORER = 5e-4
F16_ALONE = 1e-2
F16_VS_SCORER = 3e-2


def start(cfg: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "entropo_engine", "serve", "--config", str(cfg)], cwd=ENGINE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    listening = json.loads(proc.stdout.readline())
    assert listening["event"] == "listening"
    return proc, listening["url"]


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    assert proc.wait(timeout=60) == 0


@pytest.fixture(scope="module")
def adapter_dir(model, tmp_path_factory):  # noqa: F811
    """An adapter of the engine's shape (rank 8, alpha 16, all linear layers) with random, non-zero weights: it
    moves log-probs by several nats, as a trained one can."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    path = tmp_path_factory.mktemp("adapter") / "rand"
    peft_model.save_pretrained(path)
    peft_model.unload()
    return path


@pytest.fixture(scope="module")
def f16(tmp_path_factory, adapter_dir):
    proc, url = start(write_config(tmp_path_factory.mktemp("f16") / "serve.json", port=0, runtime="llamacpp", max_running=8, adapters={"rand": str(adapter_dir)}))
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def f32(tmp_path_factory, adapter_dir):
    proc, url = start(write_config(tmp_path_factory.mktemp("f32") / "serve.json", port=0, runtime="llamacpp", dtype="float32", max_running=8,
                                   adapters={"rand": str(adapter_dir)}))
    yield url
    stop(proc)


def max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b) > 0
    return max(abs(x - y) for x, y in zip(a, b))


def test_batched_and_cached_requests_answer_as_alone_on_a_cold_server(tmp_path, f16, f32):
    for url, dtype, tol in ((f32, "float32", F32_ALONE), (f16, "auto", F16_ALONE)):
        # Alone, each on a fresh server: nothing cached, nothing else in flight.
        alone = []
        for u in USER:
            proc, cold = start(write_config(tmp_path / f"cold-{dtype}.json", port=0, runtime="llamacpp", dtype=dtype, max_running=8))
            alone.append(ask(cold, user(u), max_tokens=16))
            stop(proc)
        # So that the next round of USER[0] re-uses a cached prompt: 39 prompt + 16 generated tokens cached, of
        # which the other prompts share only the 24 of the system prompt. They arrive in any order, and none may
        # take USER[0]'s slot (llama-server's own choice did, on a loaded CI machine: slots.py).
        ask(url, user(USER[0]), max_tokens=16, ignore_eos=True)
        # USER[0] waits a moment so that the others are likely in first (the case that lost its cache); if the
        # machine is slow and it is not, the check is only weaker.
        crowd = together(lambda u, wait: (time.sleep(wait), ask(url, user(u), max_tokens=16))[1], [(u, 0.5 if u == USER[0] else 0) for u in USER])
        assert crowd[0]["usage"]["prompt_tokens_details"]["cached_tokens"] >= crowd[0]["usage"]["prompt_tokens"] - 1
        for a, b in zip(alone, crowd):
            ta, la = tokens_and_logprobs(a)
            tb, lb = tokens_and_logprobs(b)
            assert ta == tb, (dtype, ta, tb)
            assert max_diff(la, lb) <= tol, dtype


def test_served_logprobs_against_the_engine_scorer(f16, f32, model, tokenizer):  # noqa: F811
    for url, tol in ((f32, F32_VS_SCORER), (f16, F16_VS_SCORER)):
        for u in USER:
            r = ask(url, user(u), max_tokens=16)
            assert max_diff(tokens_and_logprobs(r)[1], scorer_logprobs(model, tokenizer, user(u), r)) <= tol, url


def test_a_converted_adapter_changes_served_logprobs_as_it_changes_the_scorers(f32, model, tokenizer, adapter_dir):  # noqa: F811 (model)
    # Runs after base requests for the same prompts (the tests above): llama-server's host-memory prompt cache
    # once served this adapter's request from the base model's cached prompt (3.3 nats off), see llamacpp.py.
    for u in USER[:2]:
        tuned = ask(f32, user(u), "rand", max_tokens=12)
        # On the tokens the adapter chose: the scorer with and without the adapter far apart, the server with
        # the adapter equal to the scorer with it (and the base equal to the base, below).
        served_tuned = tokens_and_logprobs(tuned)[1]
        scorer_tuned = scorer_logprobs(model, tokenizer, user(u), tuned, adapter_dir)
        scorer_base = scorer_logprobs(model, tokenizer, user(u), tuned)
        shift = max_diff(scorer_tuned, scorer_base)
        assert shift >= 0.05  # the adapter really moves the distribution...
        assert max_diff(served_tuned, scorer_tuned) <= F32_VS_SCORER  # ...and the server moves it the same way
    base = ask(f32, user(USER[0]), max_tokens=12)
    assert max_diff(tokens_and_logprobs(base)[1], scorer_logprobs(model, tokenizer, user(USER[0]), base)) <= F32_VS_SCORER


def test_base_and_adapter_requests_interleaved_get_their_own_model(f16):
    jobs = [(u, name) for u in USER[:2] for name in ("smollm2-135m", "rand")]
    alone = [ask(f16, user(u), name, max_tokens=12) for u, name in jobs]
    mixed = together(lambda u, name: ask(f16, user(u), name, max_tokens=12), jobs)
    for a, b in zip(alone, mixed):
        assert tokens_and_logprobs(a)[0] == tokens_and_logprobs(b)[0]
        assert max_diff(tokens_and_logprobs(a)[1], tokens_and_logprobs(b)[1]) <= F16_ALONE
    assert tokens_and_logprobs(alone[0])[0] != tokens_and_logprobs(alone[1])[0]  # the adapter really changes the output


def test_next_turn_reuses_the_cached_prefix(f16):
    first = user("List the files in the repository.")
    r1 = ask(f16, first)
    second = first + [r1["choices"][0]["message"], {"role": "user", "content": "Now open the README."}]
    r2 = ask(f16, second)
    assert r2["usage"]["prompt_tokens_details"]["cached_tokens"] >= r1["usage"]["prompt_tokens"]
    assert r2["usage"]["prompt_tokens"] > r1["usage"]["prompt_tokens"] + 5
    stats = call(f"{f16[:-3]}/stats")[1]
    assert stats["runtime"] == "llamacpp" and stats["cached_tokens"] >= r1["usage"]["prompt_tokens"]


def test_a_full_queue_answers_503(tmp_path):
    # One sequence generating and one waiting: of four requests sent together, two find the queue full.
    proc, url = start(write_config(tmp_path / "serve.json", port=0, runtime="llamacpp", max_queue=1, max_running=1))
    try:
        body = {"model": "smollm2-135m", "messages": user(USER[0]), "max_tokens": 400, "ignore_eos": True, "temperature": 0}
        answers = together(lambda: call(f"{url}/chat/completions", body), [() for _ in range(4)])
        statuses = sorted(status for status, _ in answers)
        assert statuses == [200, 200, 503, 503], statuses
        busy = next(r for status, r in answers if status == 503)
        assert busy["error"]["type"] == "server_busy" and busy["error"]["code"] == 503
        assert all(r["usage"]["completion_tokens"] == 400 for status, r in answers if status == 200)
    finally:
        stop(proc)


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def llama_server_of(pid: int) -> int:
    """The llama-server under our server (through the setpriv that starts it, which execs into it)."""
    [child] = [c for c in children(pid) if "llama-server" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")]
    return child


def test_llama_server_is_restarted_when_it_dies_and_never_outlives_the_server(tmp_path):
    proc, url = start(write_config(tmp_path / "serve.json", port=0, runtime="llamacpp"))
    body = {"model": "smollm2-135m", "messages": user(USER[1]), "max_tokens": 6, "temperature": 0}
    try:
        before = call(f"{url}/chat/completions", body)[1]["choices"][0]["message"]
        first = llama_server_of(proc.pid)
        os.kill(first, signal.SIGKILL)
        # Requests meanwhile answer 503 (retryable) or succeed; the supervisor restarts llama-server.
        for _ in range(600):
            status, r = call(f"{url}/chat/completions", body)
            assert status in (200, 503), r
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200 and r["choices"][0]["message"] == before
        second = llama_server_of(proc.pid)
        assert second != first and call(f"{url[:-3]}/stats")[1]["restarts"] == 2
    finally:
        proc.kill()  # SIGKILL: no orderly shutdown; the parent-death signal must still take llama-server
        proc.wait()
    for _ in range(600):
        if not Path(f"/proc/{second}").exists() or "Z" in Path(f"/proc/{second}/stat").read_text().rsplit(")", 1)[1].split()[0]:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"llama-server {second} outlived its server")


def test_bad_config_names_the_field(tmp_path):
    for cfg, expected in (({"runtime": "llamacpp", "threads": 0}, "threads"), ({"runtime": "llamacpp", "model": str(tmp_path / "none.gguf")}, "GGUF file not found")):
        path = write_config(tmp_path / "bad.json", port=0, **cfg)
        done = subprocess.run([sys.executable, "-m", "entropo_engine", "serve", "--config", str(path)], cwd=ENGINE, capture_output=True, text=True)
        assert done.returncode == 2 and expected in done.stderr, done.stderr
