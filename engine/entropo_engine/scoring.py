"""Scoring: per-trajectory log-probs under a model (+ adapter), or the verifier's P(YES) per trajectory.

Output: one JSON line per record: {"id", "logp", "tokens", "mean_logp", "entropy"} for kind=trajectory
(pairs give chosen_* and rejected_*), {"id", "p_yes"} for kind=verifier, where
p_yes = P(YES) / (P(YES) + P(NO)) at the answer position."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .config import ScoreConfig
from .data import SkipRecord, TruncationReport, answer_token_ids, fit_to_length, read_records
from .events import emit
from .examples import verifier_prompt_ids
from .logprobs import next_token_logprobs, sequence_logps
from .models import load_causal_lm, load_tokenizer, pick_device, pick_dtype, resolve_model_dir


def verifier_probability(model, tokenizer, trajectory) -> float:
    yes, no = answer_token_ids(tokenizer)
    lp = next_token_logprobs(model, verifier_prompt_ids(tokenizer, trajectory))
    return float(torch.sigmoid(lp[yes] - lp[no]))


def score(cfg: ScoreConfig) -> None:
    device = pick_device(cfg.device)
    model_dir = resolve_model_dir(cfg.model)
    tokenizer = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir, device, pick_dtype(cfg.dtype, device))
    if cfg.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, cfg.adapter)
    model.eval()
    records = read_records(cfg.data.path, cfg.data.format)
    report = TruncationReport()
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with torch.no_grad(), tmp.open("w") as f:
        for n, r in enumerate(records, start=1):
            if cfg.kind == "verifier":
                row = {"id": r.id, "p_yes": verifier_probability(model, tokenizer, r.chosen)}
            else:
                row = {"id": r.id}
                for name, msgs in (("", r.chosen),) if r.rejected is None else (("chosen_", r.chosen), ("rejected_", r.rejected)):
                    try:
                        tok = fit_to_length(tokenizer, msgs, cfg.data.max_length, cfg.data.truncation, r.where, report)
                    except SkipRecord:
                        row[f"{name}skipped"] = True
                        continue
                    s = sequence_logps(model, tok, cfg.logits_chunk)
                    row |= {f"{name}logp": float(s.logp), f"{name}tokens": s.n_tokens,
                            f"{name}mean_logp": float(s.logp) / max(s.n_tokens, 1),
                            f"{name}entropy": s.entropy_sum / max(s.n_tokens, 1)}
            if any(isinstance(v, float) and not math.isfinite(v) for v in row.values()):
                emit("warning", id=r.id, message="non-finite score")
            f.write(json.dumps(row) + "\n")
            if n % 20 == 0:
                emit("progress", done=n, total=len(records))
    tmp.replace(out)
    emit("done", output=str(out), records=len(records), truncation=report.as_dict())
