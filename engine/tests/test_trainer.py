"""The trainer through its command line, as the TypeScript activity runs it.

(e) resume: 2K steps straight == K steps, SIGKILL, resume K more (max abs difference <= 1e-6, LoRA dropout
on so the RNG state matters); (f) real model: SFT and EntroPO steps on SmolLM2-135M lower their batch's
loss and change the adapter; bad config and data exit 2 naming the field and the line."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_model
from fixtures import trajectory
from safetensors.torch import load_file

ENGINE = Path(__file__).resolve().parents[1]


def run_engine(*args: str, kill_after_checkpoint: int | None = None) -> tuple[int, list[dict], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "entropo_engine", *args], cwd=ENGINE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    events = []
    for line in proc.stdout:
        event = json.loads(line)
        events.append(event)
        if kill_after_checkpoint and event["event"] == "checkpoint" and event["step"] == kill_after_checkpoint:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    return proc.returncode, events, proc.stderr.read()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def pairs(n: int) -> list[dict]:
    return [{"id": f"p{i}", "chosen": trajectory(i, 2), "rejected": trajectory(100 + i, 1)} for i in range(n)]


def write_config(path: Path, **cfg) -> Path:
    path.write_text(json.dumps(cfg))
    return path


def adapter_tensors(adapter_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(adapter_dir / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("tiny-llama")
    make_tiny_model(len(tokenizer), dtype=torch.float32).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_resume_after_kill_gives_the_same_adapter(tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs(8))
    common = dict(
        mode="entropo-dpo", model=str(tiny_model_dir), data={"path": str(data)}, checkpoint_every=2,
        lora={"rank": 4, "alpha": 8, "dropout": 0.1}, optim={"batch_size": 2, "max_steps": 4, "lr": 5e-3, "warmup_ratio": 0.25, "schedule": "cosine"},
    )
    straight = write_config(tmp_path / "straight.json", output_dir=str(tmp_path / "straight"), **common)
    code, events, err = run_engine("train", "--config", str(straight))
    assert code == 0, err
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3, 4]

    resumed = write_config(tmp_path / "resumed.json", output_dir=str(tmp_path / "resumed"), **common)
    code, events, _ = run_engine("train", "--config", str(resumed), kill_after_checkpoint=2)
    assert code == -signal.SIGKILL
    assert not (tmp_path / "resumed" / "adapter").exists()
    code, events, err = run_engine("train", "--config", str(resumed))
    assert code == 0, err
    assert next(e for e in events if e["event"] == "resumed")["step"] == 2
    assert [e["step"] for e in events if e["event"] == "step"] == [3, 4]

    a = adapter_tensors(tmp_path / "straight" / "adapter")
    b = adapter_tensors(tmp_path / "resumed" / "adapter")
    assert a.keys() == b.keys() and a
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"resume: max abs difference between adapters = {worst:.2e}")
    assert worst <= 1e-6
    # ...and training did move the adapter (LoRA B starts at zero).
    assert any(float(v.abs().max()) > 0 for k, v in a.items() if "lora_B" in k)


def test_compiled_layers_train_as_the_plain_model(tmp_path, tiny_model_dir):
    """compile_layers: true runs the same steps (the losses and the adapter agree to float32 rounding of
    fused kernels) and saves the adapter under the same names."""
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs(4))
    common = dict(
        mode="entropo-dpo", model=str(tiny_model_dir), data={"path": str(data)}, gradient_checkpointing=True,
        lora={"rank": 4, "alpha": 8, "dropout": 0.0}, optim={"batch_size": 2, "max_steps": 2, "lr": 5e-3, "warmup_ratio": 0.0},
    )
    results = {}
    for compiled in (False, True):
        out = tmp_path / f"compiled-{compiled}"
        cfg = write_config(tmp_path / f"{compiled}.json", output_dir=str(out), compile_layers=compiled, **common)
        code, events, err = run_engine("train", "--config", str(cfg))
        assert code == 0, err
        results[compiled] = ([e["loss"] for e in events if e["event"] == "step"], adapter_tensors(out / "adapter"))
        graphs = json.loads((out / "metrics.json").read_text())["compiled_graphs"]
        assert (graphs > 0) == compiled, graphs
    (plain_losses, plain), (compiled_losses, compiled) = results[False], results[True]
    assert len(plain_losses) == 2 and compiled_losses == pytest.approx(plain_losses, rel=1e-4, abs=1e-5)
    assert plain.keys() == compiled.keys()
    worst = max(float((plain[k] - compiled[k]).abs().max()) for k in plain)
    assert worst < 1e-4, worst
    assert any(float(v.abs().max()) > 0 for k, v in compiled.items() if "lora_B" in k)


@pytest.mark.parametrize("mode", ["sft", "entropo-dpo"])
def test_real_model_steps_lower_the_batch_loss_and_change_the_adapter(tmp_path, mode):
    rows = pairs(2) if mode == "entropo-dpo" else [{"id": f"t{i}", "messages": trajectory(i, 2)} for i in range(2)]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    # One batch holding every example, so each step's loss is measured on the same batch.
    cfg = write_config(
        tmp_path / "cfg.yaml", mode=mode, output_dir=str(tmp_path / "out"), data={"path": str(data)},
        optim={"batch_size": 2, "max_steps": 3, "lr": 2e-3, "warmup_ratio": 0.0},
    )
    code, events, err = run_engine("train", "--config", str(cfg))
    assert code == 0, err
    losses = [e["loss"] for e in events if e["event"] == "step"]
    print(f"{mode} on SmolLM2-135M: batch loss per step {losses}")
    assert losses[-1] < losses[0]
    tensors = adapter_tensors(tmp_path / "out" / "adapter")
    assert any(float(v.abs().max()) > 0 for k, v in tensors.items() if "lora_B" in k)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["final"]["loss"] == losses[-1]
    if mode == "entropo-dpo":
        last = [e for e in events if e["event"] == "step"][-1]
        assert last["margin"] > 0 and last["reward_accuracy"] == 1.0


def test_bad_config_names_the_field(tmp_path):
    cfg = write_config(tmp_path / "bad.json", mode="entropo-dpo", output_dir=str(tmp_path), data={"path": "x"}, optim={"lr": -1, "batchsize": 2})
    code, _, err = run_engine("train", "--config", str(cfg))
    assert code == 2
    assert "optim.lr" in err and "optim.batchsize" in err


def test_bad_data_names_the_line_and_field(tmp_path):
    rows = pairs(2)
    rows[1]["rejected"][2]["role"] = "robot"
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    cfg = write_config(tmp_path / "cfg.json", mode="entropo-dpo", output_dir=str(tmp_path / "out"), data={"path": str(data)})
    code, _, err = run_engine("train", "--config", str(cfg))
    assert code == 2
    assert f"{data}:2" in err and "rejected[2].role" in err
