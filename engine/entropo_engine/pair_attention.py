"""Attention over a packed preference pair [prefix | chosen tail | rejected tail], without an (L × L) mask.

Two causal SDPA calls, each a plain square causal attention that the fused kernels (cuDNN and flash on
GPU, the flash kernel on CPU) run while skipping the masked half:
- the chosen trajectory, positions [0, lc): prefix + chosen tail;
- the rejected trajectory, the prefix's and the rejected tail's queries, keys and values gathered into one
  sequence; only the tail's outputs are kept (the prefix's are the chosen call's).
Attention thus costs what it costs for the two trajectories run apart, while the projections and MLPs,
most of the work, run the prefix once. The earlier dense (L × L) mask made the kernel work over the whole
square of the packed sequence, so sharing the prefix was slower than running the trajectories apart; a
lower-right causal bias for the tail alone does less arithmetic but is served by a slower kernel on the
H100 (BENCHMARKS.md, "Engine on GPU").

Registered with transformers as the attention implementation `entropo_pair`. A call without a pair layout
(every other log-prob in the engine: one unpadded sequence) is plain SDPA, so a model can keep this
implementation for its lifetime, which gradient checkpointing needs: its recomputation in the backward pass
reads the implementation again.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

NAME = "entropo_pair"

# Passed as the model's attention mask in a pair call: transformers returns a 4-D mask as it is, so no
# (L × L) mask is built for the packed sequence; `pair_sdpa` does not read it.
_NO_MASK = torch.ones(1, 1, 1, 1, dtype=torch.bool)


def pair_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
              pair_layout: tuple[int, int] | None = None, **kwargs):
    """query (1, H, L, d), key/value (1, H_kv, L, d) of the packed pair; pair_layout = (prefix length n,
    chosen length lc). Returns (1, L, H, d) as transformers' attention functions do."""
    if pair_layout is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    n, lc = pair_layout
    gqa = query.shape[1] != key.shape[1]

    def causal(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=gqa)

    def rejected_side(x):
        return torch.cat([x[:, :, :n], x[:, :, lc:]], dim=2)

    chosen = causal(query[:, :, :lc], key[:, :, :lc], value[:, :, :lc])
    rejected = causal(rejected_side(query), rejected_side(key), rejected_side(value))[:, :, n:]
    return torch.cat([chosen, rejected], dim=2).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, pair_sdpa)
AttentionMaskInterface.register(NAME, sdpa_mask)


def use_pair_attention(model) -> None:
    """Switches the model to `entropo_pair` (idempotent): SDPA for single sequences, split SDPA for pairs."""
    if model.config._attn_implementation != NAME:
        model.set_attn_implementation(NAME)


def pair_call_kwargs(n: int, lc: int, device: torch.device) -> dict:
    """The extra arguments of the model's forward for a packed pair."""
    return {"attention_mask": _NO_MASK.to(device), "pair_layout": (n, lc)}
