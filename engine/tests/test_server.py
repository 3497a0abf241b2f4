"""(f) The OpenAI-compatible server on the real SmolLM2-135M: a chat request with logprobs, a freshly
trained adapter loaded at run time and served, unloaded again, and clear errors for bad requests. Every test
runs on both runtimes (torch, llamacpp): they promise the same API."""

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fixtures import trajectory
from test_trainer import ENGINE, run_engine, write_config, write_jsonl


def call(url: str, body: dict | None = None) -> tuple[int, object]:
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            raw = r.read().decode()
            return r.status, json.loads(raw) if r.headers.get_content_type() == "application/json" else raw
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


# llama.cpp on its exact path (F32 weights and KV cache, no flash attention); its F16 default is tested
# with measured tolerances in test_server_llamacpp.py.
RUNTIMES = {"torch": {}, "llamacpp": {"runtime": "llamacpp", "dtype": "float32"}}


@pytest.fixture(scope="module", params=list(RUNTIMES))
def server(tmp_path_factory, request):
    cfg = write_config(tmp_path_factory.mktemp("serve") / "serve.json", port=0, **RUNTIMES[request.param])
    proc = subprocess.Popen([sys.executable, "-m", "entropo_engine", "serve", "--config", str(cfg)], cwd=ENGINE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    listening = json.loads(proc.stdout.readline())
    assert listening["event"] == "listening"
    yield listening["url"]
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def chat(url: str, model: str, **extra) -> tuple[int, dict]:
    body = {"model": model, "messages": [{"role": "user", "content": "Fix the failing test in utils.py"}], "max_tokens": 8, **extra}
    return call(f"{url}/chat/completions", body)


def test_chat_with_logprobs(server):
    status, models = call(f"{server}/models")
    assert status == 200 and [m["id"] for m in models["data"]] == ["smollm2-135m"]
    sampling = dict(temperature=0.7, top_p=0.8, top_k=20, seed=7, n=2)
    status, r = chat(server, "smollm2-135m", **sampling, logprobs=True, top_logprobs=3)
    assert status == 200 and len(r["choices"]) == 2
    for choice in r["choices"]:
        tokens = choice["logprobs"]["content"]
        assert len(tokens) >= 1 and "".join(t["token"] for t in tokens).strip() == choice["message"]["content"].strip()
        for t in tokens:
            assert t["logprob"] <= 0 and len(t["top_logprobs"]) == 3
            top = [x["logprob"] for x in t["top_logprobs"]]
            assert top == sorted(top, reverse=True) and t["logprob"] <= top[0] + 1e-6
    assert r["usage"]["completion_tokens"] == sum(len(c["logprobs"]["content"]) for c in r["choices"])
    # The same seed gives the same samples.
    assert [c["message"] for c in chat(server, "smollm2-135m", **sampling)[1]["choices"]] == [c["message"] for c in r["choices"]]


def test_stop_and_greedy(server):
    _, greedy = chat(server, "smollm2-135m", temperature=0, max_tokens=12)
    text = greedy["choices"][0]["message"]["content"]
    assert chat(server, "smollm2-135m", temperature=0, max_tokens=12)[1]["choices"][0]["message"]["content"] == text
    word = text.split()[1]
    _, stopped = chat(server, "smollm2-135m", temperature=0, max_tokens=12, stop=[word])
    assert stopped["choices"][0]["finish_reason"] == "stop" and word not in stopped["choices"][0]["message"]["content"]


def test_serves_a_freshly_trained_adapter(server, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", [{"id": f"t{i}", "messages": trajectory(i, 1)} for i in range(2)])
    cfg = write_config(tmp_path / "sft.json", mode="sft", output_dir=str(tmp_path / "out"), data={"path": str(data)}, optim={"batch_size": 2, "max_steps": 2, "lr": 5e-3})
    code, _, err = run_engine("train", "--config", str(cfg))
    assert code == 0, err
    adapter = tmp_path / "out" / "adapter"
    _, before = chat(server, "smollm2-135m", temperature=0, logprobs=True)
    status, text = call(f"{server[:-3]}/v1/load_lora_adapter", {"lora_name": "sft-fresh", "lora_path": str(adapter)})
    assert status == 200 and "sft-fresh" in text
    assert "sft-fresh" in [m["id"] for m in call(f"{server}/models")[1]["data"]]
    _, base = chat(server, "smollm2-135m", temperature=0, logprobs=True)
    status, tuned = chat(server, "sft-fresh", temperature=0, logprobs=True)
    assert status == 200
    base_lp = [t["logprob"] for t in base["choices"][0]["logprobs"]["content"]]
    tuned_lp = [t["logprob"] for t in tuned["choices"][0]["logprobs"]["content"]]
    assert max(abs(a - b) for a, b in zip(base_lp, tuned_lp)) > 1e-3  # the adapter is really applied...
    # ...and only for its name. On torch the base model repeats its answer bit for bit after the adapter's request
    # (the original check); llama.cpp's kernels round a cached prompt differently (~5e-7), so on both runtimes it
    # also answers as before the adapter was loaded, within the 1e-4 both promise.
    if call(f"{server[:-3]}/stats")[1].get("runtime") != "llamacpp":
        assert chat(server, "smollm2-135m", temperature=0, logprobs=True)[1]["choices"][0]["logprobs"] == base["choices"][0]["logprobs"]
    before_lp = [t["logprob"] for t in before["choices"][0]["logprobs"]["content"]]
    assert len(before_lp) == len(base_lp) and max(abs(a - b) for a, b in zip(before_lp, base_lp)) <= 1e-4
    assert call(f"{server[:-3]}/v1/unload_lora_adapter", {"lora_name": "sft-fresh"})[0] == 200
    status, err = chat(server, "sft-fresh")
    assert status == 404 and err["error"]["param"] == "model"


def test_bad_requests_name_the_field(server):
    status, err = call(f"{server}/chat/completions", {"model": "smollm2-135m", "messages": [{"role": "user", "content": "x"}], "temperature": 5})
    assert status == 400 and err["error"]["param"] == "temperature"
    status, err = call(f"{server[:-3]}/v1/load_lora_adapter", {"lora_name": "x", "lora_path": str(Path("/nonexistent"))})
    assert status == 400 and err["error"]["param"] == "lora_path"
