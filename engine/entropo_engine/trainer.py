"""The LoRA trainer for every mode (sft, entropo-dpo, entropo-kto, verifier).

Plan of a job:
  1. validate config and data, tokenise (with the truncation report);
  2. load the model, wrap it with LoRA (new, or `init_adapter` made trainable);
  3. compute every reference log-prob the job will need (for the examples its schedule uses), once, before the first update (the policy at
     step 0 is the reference: a fresh LoRA adapter is the identity, an init adapter is the SFT model), or
     with `reference_model`; they are stored with the job so a resumed job reuses them;
  4. resume from the newest complete checkpoint if there is one;
  5. for each step: run the batch's examples one at a time, accumulating gradients; clip; step; print a
     JSON line; checkpoint every K steps (adapter, optimizer, scheduler, RNG; data order is a function of
     the seed, so it needs no state);
  6. save the adapter and metrics.json.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import losses
from .config import TrainConfig
from .data import TruncationReport, answer_token_ids, read_records, require
from .errors import InvalidInputError, NumericalError
from .events import emit
from .examples import Example, build_examples, mismatched_tokens, schedule
from .logprobs import next_token_logprobs, pair_logps, sequence_logps
from .models import add_lora, compile_decoder_layers, compiled_graphs, load_causal_lm, load_tokenizer, pick_device, pick_dtype, resolve_model_dir


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _atomic_write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.device = pick_device(cfg.device)
        self.dtype = pick_dtype(cfg.dtype, self.device)
        self.report = TruncationReport()
        self._mismatched_cache: dict[tuple[int, int], object] = {}

    # ------------------------------------------------------------ setup

    def prepare(self) -> None:
        cfg = self.cfg
        records = read_records(cfg.data.path, cfg.data.format)
        require(records, cfg.mode)
        self.model_dir = resolve_model_dir(cfg.model)
        self.tokenizer = load_tokenizer(self.model_dir)
        self.examples = build_examples(records, self.tokenizer, cfg.mode, cfg.data.max_length, cfg.data.truncation, self.report)
        for item in self.report.cut:
            emit("truncation", action="cut_middle", **item)
        for item in self.report.skipped:
            emit("truncation", action="skipped", **item)
        if len(self.examples) < (2 if cfg.mode == "entropo-kto" else 1):
            raise InvalidInputError(f"{cfg.data.path}: no usable records left after truncation ({len(self.report.skipped)} skipped)")
        self.steps = schedule(
            len(self.examples), cfg.optim.batch_size, cfg.seed, cfg.optim.epochs, cfg.optim.max_steps,
            min_batch=2 if cfg.mode == "entropo-kto" else 1,
        )
        if cfg.mode == "verifier":
            self.yes_id, self.no_id = answer_token_ids(self.tokenizer)

        torch.manual_seed(cfg.seed)
        model = load_causal_lm(self.model_dir, self.device, self.dtype)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        self.model = add_lora(model, cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target_modules, cfg.init_adapter)
        if cfg.compile_layers:
            compile_decoder_layers(self.model)
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        from transformers import get_scheduler

        total = len(self.steps)
        self.scheduler = get_scheduler(
            cfg.optim.schedule, self.optimizer, num_warmup_steps=int(round(cfg.optim.warmup_ratio * total)), num_training_steps=total
        )
        self.out.mkdir(parents=True, exist_ok=True)
        self.reference = self._reference_logps()

    def _reference_keys(self) -> list[tuple]:
        mode = self.cfg.mode
        # Only examples the schedule uses: a job capped by max_steps may see a small part of its data.
        used = sorted({i for batch in self.steps for i in batch})
        if mode == "entropo-dpo":
            return [("c", i) for i in used] + [("r", i) for i in used]
        if mode == "entropo-kto":
            keys = {("s", i) for i in used}
            for batch in self.steps:
                keys.update(("m", a, b) for a, b in self._mismatched_pairs(batch))
            return sorted(keys, key=str)
        return []

    @staticmethod
    def _mismatched_pairs(batch: list[int]) -> list[tuple[int, int]]:
        """(prompt of a, completion of b) pairs: each example's prompt with the next example's completion."""
        return [(batch[k], batch[(k + 1) % len(batch)]) for k in range(len(batch))]

    def _tokens_for(self, key: tuple):
        kind = key[0]
        if kind == "c" or kind == "s":
            return self.examples[key[1]].chosen
        if kind == "r":
            return self.examples[key[1]].rejected
        return self._mismatched(key[1], key[2])

    def _mismatched(self, a: int, b: int):
        """Tokenised (prompt of a, completion of b), rendered once per job: the reference pass and every
        step that draws the same pair reuse it."""
        if (a, b) not in self._mismatched_cache:
            self._mismatched_cache[(a, b)] = mismatched_tokens(self.tokenizer, self.examples[a], self.examples[b])
        return self._mismatched_cache[(a, b)]

    def _reference_logps(self) -> dict[str, float]:
        keys = self._reference_keys()
        if not keys:
            return {}
        path = self.out / "reference_logps.json"
        fingerprint = {"model": str(self.model_dir), "reference_model": self.cfg.reference_model, "init_adapter": self.cfg.init_adapter, "data": self.cfg.data.model_dump(), "n": len(keys), "seed": self.cfg.seed}
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("fingerprint") == fingerprint:
                return saved["logps"]
        started = time.time()
        if self.cfg.reference_model:
            ref_model = load_causal_lm(resolve_model_dir(self.cfg.reference_model), self.device, self.dtype).eval()
        else:
            # The policy before its first update is the reference (see the module docstring).
            ref_model = self.model
        logps = {}
        was_training = ref_model.training
        # Compiled layers round differently in an eval / no-grad graph than in the training graph, by about a
        # nat over a long bf16 trajectory: the reference would then differ from the policy at the first step.
        # Without dropout the reference can run through the policy's own training graph, which leaves only
        # the packed pair vs separate sequences (BENCHMARKS.md, "Compiled decoder layers").
        same_graph = self.cfg.compile_layers and ref_model is self.model and self.cfg.lora.dropout == 0
        if not same_graph:
            ref_model.eval()
        with torch.enable_grad() if same_graph else torch.no_grad():
            for n, key in enumerate(keys):
                logps[str(key)] = float(sequence_logps(ref_model, self._tokens_for(key), self.cfg.logits_chunk).logp)
                if (n + 1) % 50 == 0:
                    emit("reference", done=n + 1, total=len(keys))
        ref_model.train(was_training)
        if ref_model is not self.model:
            del ref_model
        _atomic_write_json(path, {"fingerprint": fingerprint, "logps": logps})
        emit("reference", done=len(keys), total=len(keys), seconds=round(time.time() - started, 2))
        return logps

    # ------------------------------------------------------------ checkpoints

    def _checkpoints(self) -> list[Path]:
        if not self.ckpt_dir.exists():
            return []
        return sorted((p for p in self.ckpt_dir.glob("step-*") if (p / "state.json").exists()), key=lambda p: int(p.name[5:]))

    def save_checkpoint(self, step: int) -> Path:
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        final = self.ckpt_dir / f"step-{step:07d}"
        tmp = self.ckpt_dir / f".tmp-step-{step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(self.model).items()}
        save_file(state, tmp / "adapter.safetensors")
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
        rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        torch.save(rng, tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "total_steps": len(self.steps)}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # a checkpoint is complete or absent, never half-written
        for old in self._checkpoints()[: -self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def resume(self) -> int:
        ckpts = self._checkpoints()
        if not ckpts:
            return 0
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        latest = ckpts[-1]
        set_peft_model_state_dict(self.model, load_file(latest / "adapter.safetensors", device=str(self.device)))
        self.optimizer.load_state_dict(torch.load(latest / "optimizer.pt", map_location=self.device))
        self.scheduler.load_state_dict(torch.load(latest / "scheduler.pt"))
        rng = torch.load(latest / "rng.pt", weights_only=False)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        step = json.loads((latest / "state.json").read_text())["step"]
        emit("resumed", step=step, checkpoint=str(latest))
        return step

    # ------------------------------------------------------------ one step per mode

    def _ref(self, *key) -> float:
        return self.reference[str(key)]

    def _step_dpo(self, batch: list[int]) -> dict:
        cfg, n = self.cfg, len(batch)
        rows = []
        for i in batch:
            ex: Example = self.examples[i]
            c, r, shared = pair_logps(self.model, ex.chosen, ex.rejected, cfg.logits_chunk, cfg.share_prefix)
            ref_c, ref_r = torch.tensor(self._ref("c", i)), torch.tensor(self._ref("r", i))
            loss = losses.entropo_dpo_loss(c.logp, r.logp, ref_c, ref_r, cfg.beta, cfg.lam)
            (loss / n).backward()
            rc = float(losses.implicit_reward(c.logp.detach(), ref_c, cfg.beta, cfg.lam))
            rr = float(losses.implicit_reward(r.logp.detach(), ref_r, cfg.beta, cfg.lam))
            tokens = len(ex.chosen) + len(ex.rejected) - shared
            rows.append((loss.item(), rc, rr, c.entropy_sum + r.entropy_sum, c.n_tokens + r.n_tokens, tokens))
        loss, rc, rr, ent, scored, tokens = (sum(x) for x in zip(*rows))
        acc = sum(1 for row in rows if row[1] > row[2]) / n
        return {"loss": loss / n, "chosen_reward": rc / n, "rejected_reward": rr / n, "reward_accuracy": acc,
                "margin": (rc - rr) / n, "entropy": ent / max(scored, 1), "tokens": tokens}

    def _step_kto(self, batch: list[int]) -> dict:
        cfg, n = self.cfg, len(batch)
        pairs = self._mismatched_pairs(batch)
        mismatched = [self._mismatched(a, b) for a, b in pairs]
        with torch.no_grad():
            policy_mismatched = torch.stack([sequence_logps(self.model, t, cfg.logits_chunk).logp for t in mismatched])
        ref_mismatched = torch.tensor([self._ref("m", a, b) for a, b in pairs])
        z0 = losses.kto_reference_point(policy_mismatched, ref_mismatched, cfg.beta, cfg.lam)
        rows = []
        for i in batch:
            ex = self.examples[i]
            s = sequence_logps(self.model, ex.chosen, cfg.logits_chunk)
            ref = torch.tensor(self._ref("s", i))
            loss = losses.entropo_kto_loss(
                s.logp, ref, torch.tensor(bool(ex.label)), z0, cfg.beta, cfg.lam, cfg.kto.desirable_weight, cfg.kto.undesirable_weight
            )
            (loss / n).backward()
            reward = float(losses.implicit_reward(s.logp.detach(), ref, cfg.beta, cfg.lam))
            rows.append((loss.item(), reward, bool(ex.label), s.entropy_sum, s.n_tokens, len(ex.chosen)))
        good = [r[1] for r in rows if r[2]]
        bad = [r[1] for r in rows if not r[2]]
        return {
            "loss": sum(r[0] for r in rows) / n,
            "chosen_reward": sum(good) / len(good) if good else None,
            "rejected_reward": sum(bad) / len(bad) if bad else None,
            "z0": float(z0),
            "entropy": sum(r[3] for r in rows) / max(sum(r[4] for r in rows), 1),
            "tokens": sum(r[5] for r in rows) + sum(len(t) for t in mismatched),
        }

    def _step_sft(self, batch: list[int]) -> dict:
        n = len(batch)
        rows = []
        for i in batch:
            ex = self.examples[i]
            s = sequence_logps(self.model, ex.chosen, self.cfg.logits_chunk)
            loss = -s.logp / max(s.n_tokens, 1)  # masked NLL, mean over this example's assistant tokens
            (loss / n).backward()
            rows.append((loss.item(), s.entropy_sum, s.n_tokens, len(ex.chosen)))
        return {"loss": sum(r[0] for r in rows) / n, "entropy": sum(r[1] for r in rows) / max(sum(r[2] for r in rows), 1),
                "tokens": sum(r[3] for r in rows)}

    def _step_verifier(self, batch: list[int]) -> dict:
        n = len(batch)
        rows = []
        for i in batch:
            ex = self.examples[i]
            lp = next_token_logprobs(self.model, ex.chosen.input_ids)
            loss = losses.verifier_loss(lp[self.yes_id], lp[self.no_id], torch.tensor(bool(ex.label)))
            (loss / n).backward()
            p_yes = float(torch.sigmoid(lp[self.yes_id] - lp[self.no_id]))
            rows.append((loss.item(), (p_yes > 0.5) == bool(ex.label), len(ex.chosen)))
        return {"loss": sum(r[0] for r in rows) / n, "accuracy": sum(r[1] for r in rows) / n, "tokens": sum(r[2] for r in rows)}

    # ------------------------------------------------------------ the loop

    def run(self) -> dict:
        self.prepare()
        step_fn = {"sft": self._step_sft, "entropo-dpo": self._step_dpo, "entropo-kto": self._step_kto, "verifier": self._step_verifier}[self.cfg.mode]
        start = self.resume()
        total = len(self.steps)
        emit("start", mode=self.cfg.mode, examples=len(self.examples), total_steps=total, start_step=start,
             beta=self.cfg.beta, **{"lambda": self.cfg.lam}, alpha=self.cfg.alpha, device=str(self.device), dtype=str(self.dtype).removeprefix("torch."))
        history = []
        tokens_total, seconds_total = 0, 0.0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        for step in range(start, total):
            started = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            stats = step_fn(self.steps[step])
            params = [p for p in self.model.parameters() if p.requires_grad]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.max_grad_norm or float("inf"))
            if not (np.isfinite(stats["loss"]) and torch.isfinite(grad_norm)):
                emit("numerical_failure", step=step + 1, loss=stats["loss"], grad_norm=float(grad_norm))
                raise NumericalError(f"step {step + 1}: loss {stats['loss']} / gradient norm {float(grad_norm)} is not finite")
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            elapsed = time.perf_counter() - started
            tokens_total += stats["tokens"]
            seconds_total += elapsed
            record = {"step": step + 1, "total_steps": total, **stats, "lr": lr, "grad_norm": float(grad_norm),
                      "tokens_per_s": round(stats["tokens"] / elapsed, 1), "peak_memory_mb": round(peak_memory_mb(self.device), 1)}
            history.append(record)
            emit("step", **record)
            if (step + 1) % self.cfg.checkpoint_every == 0 or step + 1 == total:
                emit("checkpoint", step=step + 1, path=str(self.save_checkpoint(step + 1)))
        adapter_dir = self.out / "adapter"
        self.model.save_pretrained(adapter_dir)
        metrics = {
            "mode": self.cfg.mode, "steps": total, "resumed_from": start, "examples": len(self.examples),
            "beta": self.cfg.beta, "lambda": self.cfg.lam, "alpha": self.cfg.alpha,
            "final": history[-1] if history else None, "history": history,
            "tokens_per_s": round(tokens_total / seconds_total, 1) if seconds_total else None,
            "peak_memory_mb": round(peak_memory_mb(self.device), 1), "truncation": self.report.as_dict(),
            "adapter_dir": str(adapter_dir), "compiled_graphs": compiled_graphs(),
        }
        _atomic_write_json(self.out / "metrics.json", metrics)
        emit("done", adapter_dir=str(adapter_dir), metrics=str(self.out / "metrics.json"))
        return metrics


def train(cfg: TrainConfig) -> dict:
    print(f"[engine] train {cfg.mode} -> {cfg.output_dir}", file=sys.stderr)
    return Trainer(cfg).run()
