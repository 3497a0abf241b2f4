"""Sequence log-probabilities under a causal LM, summed over the assistant tokens of a conversation.

Only positions that predict an assistant token are projected to the vocabulary, in chunks, so the
(tokens × vocabulary) logits of a long trajectory are never materialised at once; each chunk is
recomputed in the backward pass instead of being stored.

A preference pair's chosen and rejected trajectories share their system+task prefix (and often early
turns). `pair_logps` runs that prefix once: it packs [prefix, chosen tail, rejected tail] into one
sequence with position ids that restart after the prefix, and `pair_attention` lets the rejected tail
see the prefix and itself, never the chosen tail, so every token sees exactly the context it would see
alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from .data import Tokenized
from .models import decoder_and_head
from .pair_attention import pair_call_kwargs, use_pair_attention


@dataclass
class SeqLogps:
    logp: torch.Tensor  # scalar: sum of log-probs of the assistant tokens
    n_tokens: int  # assistant tokens scored
    entropy_sum: float  # sum over those positions of the policy's entropy (nats), for monitoring


def _targets(tok: Tokenized, packed_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every assistant token t >= 1: the packed position whose output predicts it, and its id."""
    ts = [t for t in range(1, len(tok)) if tok.mask[t]]
    index = torch.tensor(ts, dtype=torch.long)
    return packed_index[index - 1], torch.tensor([tok.input_ids[t] for t in ts], dtype=torch.long)


def _chunk_logps(head, hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = head(hidden)
    if logits.dtype in (torch.bfloat16, torch.float16):
        logits = logits.float()  # log-softmax over a large vocabulary needs float32 at least
    log_probs = torch.log_softmax(logits, dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1), entropy


def token_logps(head, hidden: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor, chunk: int):
    """log pi(target | context) at each position (hidden: (L, d)); returns (logps, entropies)."""
    positions, targets = positions.to(hidden.device), targets.to(hidden.device)
    logps, entropies = [], []
    for s in range(0, len(positions), chunk):
        h, y = hidden[positions[s : s + chunk]], targets[s : s + chunk]
        if torch.is_grad_enabled() and h.requires_grad:
            lp, ent = checkpoint(_chunk_logps, head, h, y, use_reentrant=False)
        else:
            lp, ent = _chunk_logps(head, h, y)
        logps.append(lp)
        entropies.append(ent.detach())
    if not logps:
        empty = hidden.new_zeros(0)
        return empty, empty
    return torch.cat(logps), torch.cat(entropies)


def _hidden(model, input_ids: list[int], position_ids: torch.Tensor | None = None, **pair):
    """The decoder's last hidden states (L, d) of one unpadded sequence (`pair`: a packed pair's arguments)."""
    body, _ = decoder_and_head(model)
    device = next(model.parameters()).device
    out = body(
        input_ids=torch.tensor([input_ids], device=device),
        position_ids=None if position_ids is None else position_ids.unsqueeze(0).to(device),
        use_cache=False,
        **pair,
    )
    return out.last_hidden_state[0]


def sequence_logps(model, tok: Tokenized, chunk: int = 1024) -> SeqLogps:
    """Sum of assistant-token log-probs of one conversation (a plain causal forward)."""
    _, head = decoder_and_head(model)
    hidden = _hidden(model, tok.input_ids)
    positions, targets = _targets(tok, torch.arange(len(tok)))
    lp, ent = token_logps(head, hidden, positions, targets, chunk)
    return SeqLogps(lp.sum(), len(targets), float(ent.sum()))


def shared_prefix_length(a: list[int], b: list[int]) -> int:
    """Longest common token prefix, leaving each sequence at least one token of its own."""
    n = 0
    limit = min(len(a), len(b)) - 1
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def packed_pair(chosen: Tokenized, rejected: Tokenized) -> tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Packs [prefix, chosen tail, rejected tail]. Returns ids, position ids, each branch's packed index of
    its own tokens, and the prefix length. Who sees whom is `pair_attention`'s: the rejected tail sees the
    prefix and itself, never the chosen tail."""
    n = shared_prefix_length(chosen.input_ids, rejected.input_ids)
    lc, lr = len(chosen), len(rejected)
    ids = chosen.input_ids + rejected.input_ids[n:]
    positions = torch.cat([torch.arange(lc), torch.arange(n, lr)])
    chosen_index = torch.arange(lc)
    rejected_index = torch.cat([torch.arange(n), torch.arange(lc, len(ids))])
    return ids, positions, chosen_index, rejected_index, n


def pair_logps(model, chosen: Tokenized, rejected: Tokenized, chunk: int = 1024, share_prefix: bool = True) -> tuple[SeqLogps, SeqLogps, int]:
    """Log-probs of both trajectories of a pair; with share_prefix their common prefix is run once.
    Returns (chosen, rejected, shared prefix length in tokens)."""
    if not share_prefix:
        return sequence_logps(model, chosen, chunk), sequence_logps(model, rejected, chunk), 0
    _, head = decoder_and_head(model)
    ids, positions, chosen_index, rejected_index, n = packed_pair(chosen, rejected)
    use_pair_attention(model)
    device = next(model.parameters()).device
    hidden = _hidden(model, ids, positions, **pair_call_kwargs(n, len(chosen), device))
    out = []
    for tok, index in ((chosen, chosen_index), (rejected, rejected_index)):
        pos, targets = _targets(tok, index)
        lp, ent = token_logps(head, hidden, pos, targets, chunk)
        out.append(SeqLogps(lp.sum(), len(targets), float(ent.sum())))
    return out[0], out[1], n


def next_token_logprobs(model, input_ids: list[int]) -> torch.Tensor:
    """Log-probabilities over the vocabulary for the token after `input_ids` (shape (vocab,))."""
    _, head = decoder_and_head(model)
    hidden = _hidden(model, input_ids)
    return torch.log_softmax(head(hidden[-1:]).to(torch.float32), dim=-1)[0]
