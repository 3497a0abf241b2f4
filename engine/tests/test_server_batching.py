"""The server's batching on the real SmolLM2-135M: requests in flight together (base and adapter mixed) get
exactly what they get alone, a follow-up turn re-uses the cached prefix, the prefix cache stays within its
bound, and min_p, context_length_exceeded and per-request seeds behave as vLLM's do. Log-probs are checked
against the engine's scorer (logprobs.token_logps over one full forward) within 1e-4."""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from test_server import call
from test_trainer import ENGINE, write_config

TOL = 1e-4
USER = ["Fix the failing test in utils.py", "What does git rebase do?", "Write a haiku about tests.", "Name three sorting algorithms."]


@pytest.fixture(scope="module")
def model(smol_dir):
    from entropo_engine.models import load_causal_lm

    return load_causal_lm(smol_dir, torch.device("cpu"), torch.float32).eval()


@pytest.fixture(scope="module")
def adapter_dir(model, tmp_path_factory):
    """A LoRA adapter with random (non-zero) weights: it changes the model's output, as a trained one does."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    path = tmp_path_factory.mktemp("adapter") / "rand"
    peft_model.save_pretrained(path)
    peft_model.unload()  # gives the plain model back to the other fixtures
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, adapter_dir):
    # 8 MB holds three of these short conversations (46 KB per token), so the eviction test can overflow it.
    cfg = write_config(tmp_path_factory.mktemp("serve") / "serve.json", port=0, prefix_cache_mb=8, adapters={"rand": str(adapter_dir)})
    proc = subprocess.Popen([sys.executable, "-m", "entropo_engine", "serve", "--config", str(cfg)], cwd=ENGINE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    listening = json.loads(proc.stdout.readline())
    assert listening["event"] == "listening"
    yield listening["url"]
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def ask(url: str, messages: list[dict], model: str = "smollm2-135m", **extra) -> dict:
    status, r = call(f"{url}/chat/completions", {"model": model, "messages": messages, "max_tokens": 6, "temperature": 0, "logprobs": True,
                                                    "return_tokens_as_token_ids": True, **extra})
    assert status == 200, r
    return r


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def together(fn, args: list) -> list:
    with ThreadPoolExecutor(len(args)) as pool:
        return list(pool.map(lambda a: fn(*a), args))


def tokens_and_logprobs(r: dict, i: int = 0) -> tuple[list[str], list[float]]:
    content = r["choices"][i]["logprobs"]["content"]
    return [t["token"] for t in content], [t["logprob"] for t in content]


def assert_same(a: dict, b: dict) -> None:
    ta, la = tokens_and_logprobs(a)
    tb, lb = tokens_and_logprobs(b)
    assert ta == tb and max(abs(x - y) for x, y in zip(la, lb)) <= TOL, (ta, tb, la, lb)


def scorer_logprobs(model, tokenizer, messages: list[dict], r: dict, adapter=None) -> list[float]:
    """The engine's scorer on prompt + completion: one full forward, log-probs of the completion tokens."""
    from entropo_engine.logprobs import _hidden, token_logps
    from entropo_engine.models import decoder_and_head

    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    completion = [int(t["token"].removeprefix("token_id:")) for t in r["choices"][0]["logprobs"]["content"]]
    m = model
    if adapter is not None:
        from peft import PeftModel

        m = PeftModel.from_pretrained(model, adapter).eval()
    try:
        with torch.no_grad():
            ids = prompt + completion
            hidden = _hidden(m, ids)
            positions = torch.arange(len(prompt) - 1, len(ids) - 1)
            lp, _ = token_logps(decoder_and_head(m)[1], hidden, positions, torch.tensor(completion), 1024)
    finally:
        if adapter is not None:
            m.unload()
    return lp.tolist()


def test_requests_in_flight_together_match_alone_and_the_scorer(server, model, tokenizer):
    alone = [ask(server, user(u)) for u in USER]
    at_once = together(lambda u: ask(server, user(u)), [(u,) for u in USER])
    for a, b in zip(alone, at_once):
        assert_same(a, b)
    for u, r in zip(USER, at_once):
        served = tokens_and_logprobs(r)[1]
        assert max(abs(x - y) for x, y in zip(served, scorer_logprobs(model, tokenizer, user(u), r))) <= TOL


def test_base_and_adapter_requests_interleaved_get_their_own_model(server, model, tokenizer, adapter_dir):
    jobs = [(u, name) for u in USER[:2] for name in ("smollm2-135m", "rand")]
    alone = [ask(server, user(u), name) for u, name in jobs]
    mixed = together(lambda u, name: ask(server, user(u), name), jobs)
    for a, b in zip(alone, mixed):
        assert_same(a, b)
    assert tokens_and_logprobs(alone[0]) != tokens_and_logprobs(alone[1])  # the adapter really changes the output
    served = tokens_and_logprobs(mixed[1])[1]
    assert max(abs(x - y) for x, y in zip(served, scorer_logprobs(model, tokenizer, user(USER[0]), mixed[1], adapter_dir))) <= TOL


def test_next_turn_reuses_the_cached_prefix(server, model, tokenizer):
    first = user("List the files in the repository.")
    r1 = ask(server, first)
    second = first + [r1["choices"][0]["message"], {"role": "user", "content": "Now open the README."}]
    r2 = ask(server, second)
    assert r2["usage"]["prompt_tokens_details"]["cached_tokens"] >= r1["usage"]["prompt_tokens"]
    served = tokens_and_logprobs(r2)[1]
    assert max(abs(x - y) for x, y in zip(served, scorer_logprobs(model, tokenizer, second, r2))) <= TOL


def test_prefix_cache_stays_within_its_bound(server):
    convs = [user(f"{k} is my favourite number. Why?") for k in range(6)]  # they share only the system prompt
    replies = [ask(server, c) for c in convs]
    stats = call(f"{server[:-3]}/stats")[1]["prefix_cache"]
    assert stats["bytes"] <= stats["max_bytes"] == 8 << 20 and stats["evictions"] >= 1
    # The oldest conversation was evicted: its next turn re-uses only the system prompt the others share.
    follow = convs[0] + [replies[0]["choices"][0]["message"], {"role": "user", "content": "And its square?"}]
    assert ask(server, follow)["usage"]["prompt_tokens_details"]["cached_tokens"] < replies[0]["usage"]["prompt_tokens"]
    # The newest one is still there.
    follow = convs[-1] + [replies[-1]["choices"][0]["message"], {"role": "user", "content": "And its square?"}]
    assert ask(server, follow)["usage"]["prompt_tokens_details"]["cached_tokens"] >= replies[-1]["usage"]["prompt_tokens"]


def test_min_p_is_honoured(server):
    greedy = ask(server, user(USER[2]), max_tokens=8)["choices"][0]["message"]["content"]
    hot = dict(temperature=1.8, max_tokens=8, logprobs=False)
    # min_p=1 keeps only the most likely token: sampling at any temperature is greedy.
    assert {ask(server, user(USER[2]), seed=s, min_p=1.0, **hot)["choices"][0]["message"]["content"] for s in (1, 2, 3)} == {greedy}
    assert any(ask(server, user(USER[2]), seed=s, **hot)["choices"][0]["message"]["content"] != greedy for s in (1, 2, 3))


def test_context_length_exceeded_is_an_openai_error(server):
    status, err = call(f"{server}/chat/completions", {"model": "smollm2-135m", "messages": user("hi"), "max_tokens": 8190})
    assert status == 400
    assert err["error"]["code"] == "context_length_exceeded" and err["error"]["type"] == "invalid_request_error"
    assert "8192" in err["error"]["message"]


def test_a_seeded_request_is_not_disturbed_by_others(server):
    sampled = dict(temperature=1.0, top_p=0.95, max_tokens=8, seed=11, n=2)
    alone = ask(server, user(USER[0]), **sampled)
    jobs = [(USER[0], sampled)] + [(u, dict(temperature=1.0, max_tokens=8)) for u in USER[1:]]
    crowd = together(lambda u, kw: ask(server, user(u), **kw), jobs)
    assert [c["message"] for c in crowd[0]["choices"]] == [c["message"] for c in alone["choices"]]
    assert_same(alone, crowd[0])


def test_a_full_queue_answers_503(tmp_path):
    # One sequence at a time and one waiting: of four requests sent together, the first is always taken
    # and at least two of the others find the queue full (each runs for 100 tokens, far longer than sending).
    cfg = write_config(tmp_path / "serve.json", port=0, max_queue=1, max_running=1)
    proc = subprocess.Popen([sys.executable, "-m", "entropo_engine", "serve", "--config", str(cfg)], cwd=ENGINE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = json.loads(proc.stdout.readline())["url"]
        body = {"model": "smollm2-135m", "messages": user(USER[0]), "max_tokens": 100, "ignore_eos": True, "temperature": 0}
        answers = together(lambda: call(f"{url}/chat/completions", body), [() for _ in range(4)])
        statuses = sorted(status for status, _ in answers)
        assert statuses[0] == 200 and statuses[-2:] == [503, 503], statuses
        busy = next(r for status, r in answers if status == 503)
        assert busy["error"]["type"] == "server_busy" and busy["error"]["code"] == 503
        assert next(r for status, r in answers if status == 200)["usage"]["completion_tokens"] == 100
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
