"""(b) At lambda = 0 EntroPO-DPO equals TRL's DPOTrainer sigmoid loss on identical log-probs (to 1e-6).

TRL computes its loss from its own batch (its tokenisation, its completion mask); we take the per-sequence
log-probs of exactly that batch under the same policy and reference models and feed them to our loss."""

import pytest
import torch
from conftest import make_tiny_model
from entropo_engine.losses import entropo_dpo_loss

trl = pytest.importorskip("trl", reason="TRL is not installed in this environment (engine/requirements.txt installs it)")


def sequence_logps(model, input_ids, attention_mask, completion_mask):
    """Per-sequence completion log-probs, computed the way DPOTrainer computes them (its fused LM-head path),
    so both losses see bit-identical inputs."""
    labels = input_ids.masked_fill(completion_mask == 0, -100)
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True, use_cache=False)
    return out.log_probs[:, -(input_ids.shape[1] - 1) :].sum(-1)


def test_lambda_zero_matches_trl_dpo_trainer(tokenizer, tmp_path):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    policy = make_tiny_model(len(tokenizer), seed=0, dtype=torch.float32)
    reference = make_tiny_model(len(tokenizer), seed=1, dtype=torch.float32)  # differs, so the loss is not log 2
    prompt = [{"role": "user", "content": "pluralize('box') returns 'boxs'. Fix it."}]
    rows = [
        {"prompt": prompt, "chosen": [{"role": "assistant", "content": "Add the 'x' -> 'xes' rule."}], "rejected": [{"role": "assistant", "content": "Delete the test."}]},
        {"prompt": prompt, "chosen": [{"role": "assistant", "content": "Handle sibilant endings."}], "rejected": [{"role": "assistant", "content": "It works for me."}]},
    ]
    beta = 0.1
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, beta=beta, loss_type=["sigmoid"], report_to=[], use_cpu=True, max_length=256, logging_steps=1)
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch)
        ids, attn, comp = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        logps = sequence_logps(trainer.model, ids, attn, comp)
        ref_logps = sequence_logps(trainer.ref_model, ids, attn, comp)
    chosen, rejected = logps.chunk(2)
    ref_chosen, ref_rejected = ref_logps.chunk(2)
    ours = entropo_dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=beta, lam=0.0).mean()
    print(f"TRL DPOTrainer loss {float(trl_loss):.8f}, EntroPO-DPO(lambda=0) {float(ours):.8f}")
    assert abs(float(trl_loss) - 0.6931) > 1e-3  # policy and reference differ
    assert abs(float(trl_loss) - float(ours)) <= 1e-6
