"""(c) Masks: only assistant tokens count. Perturbing a non-assistant token's label leaves the loss
unchanged, perturbing an assistant token changes it, and a pair's shared prefix gives the same losses
computed once (packed) or twice (separately)."""

import torch
from entropo_engine.data import Tokenized, TruncationReport, fit_to_length, tokenize_messages
from entropo_engine.logprobs import pair_logps, sequence_logps, token_logps
from entropo_engine.losses import entropo_dpo_loss, masked_nll
from entropo_engine.models import decoder_and_head
from fixtures import trajectory


def test_mask_keeps_exactly_the_assistant_turns(tokenizer):
    msgs = trajectory(1)
    tok = tokenize_messages(tokenizer, msgs)
    kept = tokenizer.decode([i for i, m in zip(tok.input_ids, tok.mask) if m])
    dropped = tokenizer.decode([i for i, m in zip(tok.input_ids, tok.mask) if not m])
    for m in msgs:
        assert (m["content"] in kept) == (m["role"] == "assistant"), m
        assert (m["content"] in dropped) == (m["role"] != "assistant"), m
    # Each assistant turn's end-of-turn marker is learned (so the model learns to stop).
    assert kept.count("<|im_end|>") == sum(m["role"] == "assistant" for m in msgs)


def _loss_with_labels(model, tok: Tokenized, labels: list[int]) -> torch.Tensor:
    """Masked NLL where the *targets* are `labels` (a perturbed copy of the input ids), inputs unchanged."""
    body, head = decoder_and_head(model)
    hidden = body(input_ids=torch.tensor([tok.input_ids])).last_hidden_state[0]
    positions = torch.arange(len(tok) - 1)
    lp, _ = token_logps(head, hidden, positions, torch.tensor(labels[1:]), chunk=64)
    return masked_nll(lp, torch.tensor(tok.mask[1:]))


def test_perturbing_labels_outside_assistant_turns_changes_nothing(tokenizer, tiny_model):
    tok = tokenize_messages(tokenizer, trajectory(2))
    base = _loss_with_labels(tiny_model, tok, tok.input_ids)
    assert torch.allclose(base, sequence_logps(tiny_model, tok).logp.neg() / sum(tok.mask[1:]), atol=1e-10)
    outside = [t for t in range(1, len(tok)) if not tok.mask[t]]
    inside = [t for t in range(1, len(tok)) if tok.mask[t]]
    for t in outside[:: max(1, len(outside) // 10)]:
        labels = list(tok.input_ids)
        labels[t] = (labels[t] + 7) % len(tokenizer)
        assert torch.equal(_loss_with_labels(tiny_model, tok, labels), base), f"label {t} outside the mask changed the loss"
    for t in inside[:: max(1, len(inside) // 10)]:
        labels = list(tok.input_ids)
        labels[t] = (labels[t] + 7) % len(tokenizer)
        assert not torch.equal(_loss_with_labels(tiny_model, tok, labels), base), f"label {t} inside the mask had no effect"


def test_shared_prefix_once_equals_twice(tokenizer, tiny_model):
    chosen = tokenize_messages(tokenizer, trajectory(3, turns=3))
    rejected = tokenize_messages(tokenizer, trajectory(4, turns=2))
    c1, r1, shared = pair_logps(tiny_model, chosen, rejected, share_prefix=True)
    c2, r2, _ = pair_logps(tiny_model, chosen, rejected, share_prefix=False)
    assert shared > 20  # system + task are shared
    assert torch.allclose(c1.logp, c2.logp, atol=1e-9) and torch.allclose(r1.logp, r2.logp, atol=1e-9)
    ref_c, ref_r = c2.logp.detach() + 1.0, r2.logp.detach() - 2.0
    once = entropo_dpo_loss(c1.logp, r1.logp, ref_c, ref_r, 0.1, 0.01)
    twice = entropo_dpo_loss(c2.logp, r2.logp, ref_c, ref_r, 0.1, 0.01)
    assert torch.allclose(once, twice, atol=1e-10)
    # ...and the gradients agree too.
    params = [p for p in tiny_model.parameters()]
    g_once = torch.autograd.grad(once.sum(), params)
    g_twice = torch.autograd.grad(twice.sum(), params)
    worst = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) for a, b in zip(g_once, g_twice))
    # Llama's RMSNorm computes in float32 even in a float64 model, so gradients agree to float32 precision.
    assert worst < 1e-5, worst


def test_shared_prefix_under_gradient_checkpointing_and_adapters(tokenizer):
    """The backward pass recomputes each layer: the pair's attention must be the same there (a plain causal
    recomputation would let the rejected tail see the chosen tail and the gradients would differ)."""
    from conftest import make_tiny_model
    from entropo_engine.models import add_lora

    model = make_tiny_model(len(tokenizer), seed=3)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = add_lora(model, 4, 8, 0.0, "all-linear")
    model.train()
    chosen = tokenize_messages(tokenizer, trajectory(6, turns=3))
    rejected = tokenize_messages(tokenizer, trajectory(7, turns=4))
    params = [p for p in model.parameters() if p.requires_grad]
    grads = []
    for share in (True, False):
        c, r, shared = pair_logps(model, chosen, rejected, chunk=16, share_prefix=share)
        assert (shared > 20) == share
        grads.append(torch.autograd.grad((c.logp - 2 * r.logp), params))
    worst = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) for a, b in zip(*grads))
    assert worst < 1e-5, worst


def test_cut_middle_keeps_prefix_and_end_and_reports(tokenizer):
    msgs = trajectory(5, turns=6)
    full = tokenize_messages(tokenizer, msgs)
    report = TruncationReport()
    cut = fit_to_length(tokenizer, msgs, len(full) - 30, "cut_middle", "data.jsonl:1", report)
    assert len(cut) <= len(full) - 30 and cut.turns_cut > 0
    text = tokenizer.decode(cut.input_ids)
    assert msgs[1]["content"] in text and msgs[-1]["content"] in text  # task and final submission kept
    assert report.cut == [{"where": "data.jsonl:1", "tokens_before": len(full), "tokens_after": len(cut), "messages_cut": cut.turns_cut}]
