"""Turning records into tokenised training examples for each mode, and the deterministic batch order."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import (
    Messages,
    Record,
    SkipRecord,
    Tokenized,
    TruncationReport,
    fit_to_length,
    render,
    tokenize_messages,
    verifier_messages,
)


@dataclass
class Example:
    id: str
    where: str
    chosen: Tokenized  # the conversation (SFT, KTO) or the chosen trajectory (DPO); verifier: the judge prompt
    rejected: Tokenized | None = None
    label: bool | None = None
    prompt: Messages | None = None  # KTO: messages before the first assistant turn
    completion: Messages | None = None  # KTO: the rest


def _kept_messages(messages: Messages, tok: Tokenized) -> Messages:
    if not tok.turns_cut:
        return messages
    head = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:head] + messages[head + tok.turns_cut :]


def verifier_prompt_ids(tokenizer, trajectory: Messages) -> list[int]:
    """Token ids of the verifier's judge prompt, ending where the YES/NO answer is read."""
    text = render(tokenizer, verifier_messages(trajectory), add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def build_examples(records: list[Record], tokenizer, mode: str, max_length: int, policy: str, report: TruncationReport) -> list[Example]:
    examples = []
    for r in records:
        try:
            if mode == "entropo-dpo":
                examples.append(
                    Example(
                        r.id,
                        r.where,
                        fit_to_length(tokenizer, r.chosen, max_length, policy, f"{r.where} (chosen)", report),
                        fit_to_length(tokenizer, r.rejected, max_length, policy, f"{r.where} (rejected)", report),
                    )
                )
            elif mode == "verifier":
                # Leave room for the judge's instructions around the transcript.
                overhead = len(verifier_prompt_ids(tokenizer, [])) + 8
                tok = fit_to_length(tokenizer, r.chosen, max_length - overhead, policy, r.where, report)
                ids = verifier_prompt_ids(tokenizer, _kept_messages(r.chosen, tok))
                examples.append(Example(r.id, r.where, Tokenized(ids, [False] * len(ids)), label=r.label))
            else:
                tok = fit_to_length(tokenizer, r.chosen, max_length, policy, r.where, report)
                kept = _kept_messages(r.chosen, tok)
                head = next(i for i, m in enumerate(kept) if m["role"] == "assistant")
                examples.append(Example(r.id, r.where, tok, label=r.label, prompt=kept[:head], completion=kept[head:]))
        except SkipRecord:
            continue
    return examples


def mismatched_tokens(tokenizer, a: Example, b: Example) -> Tokenized:
    """KTO's mismatched pair: the prompt of `a` followed by the completion of `b`."""
    return tokenize_messages(tokenizer, a.prompt + b.completion)


def epoch_batches(n_examples: int, batch_size: int, seed: int, epoch: int, min_batch: int = 1) -> list[list[int]]:
    """The batches of one epoch, in a shuffled order that depends only on (seed, epoch), so a resumed job
    sees exactly the batches the uninterrupted one would. A final batch smaller than `min_batch` is merged
    into the previous one."""
    order = torch.randperm(n_examples, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    batches = [order[i : i + batch_size] for i in range(0, n_examples, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < min_batch:
        batches[-2].extend(batches.pop())
    return batches


def schedule(n_examples: int, batch_size: int, seed: int, epochs: int, max_steps: int | None, min_batch: int = 1) -> list[list[int]]:
    """Every optimizer step's batch for the whole job (max_steps cuts it or cycles further epochs)."""
    steps: list[list[int]] = []
    epoch = 0
    while (max_steps is None and epoch < epochs) or (max_steps is not None and len(steps) < max_steps):
        steps.extend(epoch_batches(n_examples, batch_size, seed, epoch, min_batch))
        epoch += 1
    return steps[:max_steps] if max_steps is not None else steps
