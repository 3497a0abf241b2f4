"""Engine job configs: pydantic models validated on load, with every bad field reported by path.

A config is a JSON or YAML file. Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InvalidInputError

DEFAULT_MODEL = "smollm2-135m"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraConfig(Strict):
    """LoRA adapter shape. Paper defaults (appendix D.4): rank 8, alpha 16, all linear layers."""

    rank: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: Literal["all-linear"] | list[str] = "all-linear"


class DataConfig(Strict):
    path: str
    format: Literal["auto", "trajectory", "pair", "kto", "sharegpt"] = "auto"
    max_length: int = Field(4096, ge=16)
    # What to do with a conversation longer than max_length. cut_middle drops whole middle turns (keeping
    # the system+task prefix and the end, which decides the label); skip drops the record; error stops.
    # Every cut or skip is reported on stdout and in metrics.json.
    truncation: Literal["cut_middle", "skip", "error"] = "cut_middle"


class OptimConfig(Strict):
    lr: float = Field(1e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    # Examples per optimizer step; they are run one at a time and their gradients accumulated.
    batch_size: int = Field(4, ge=1)
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0)


class KtoConfig(Strict):
    desirable_weight: float = Field(1.0, gt=0)
    undesirable_weight: float = Field(1.0, gt=0)


class TrainConfig(Strict):
    mode: Literal["sft", "entropo-dpo", "entropo-kto", "verifier"]
    model: str = DEFAULT_MODEL
    # Reference policy: by default the model with the adapter disabled; or another model (dir or GGUF).
    reference_model: str | None = None
    # Start from an existing adapter (e.g. EntroPO from the SFT adapter); it is also the reference then.
    init_adapter: str | None = None
    output_dir: str
    data: DataConfig
    lora: LoraConfig = LoraConfig()
    optim: OptimConfig = OptimConfig()
    kto: KtoConfig = KtoConfig()
    beta: float = Field(0.1, gt=0)
    # lambda: the entropy bonus; alpha = lambda + beta. The authors' code used beta 0.1, alpha 0.11.
    lam: float = Field(0.01, ge=0, alias="lambda")
    seed: int = 0
    checkpoint_every: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    gradient_checkpointing: bool = False
    # torch.compile each decoder layer (dynamic shapes): fuses the elementwise work around the matrix
    # products. One-time compile (~80 s for a 4B model on an H100), then 1.40-1.51x per step there
    # (BENCHMARKS.md); off by default: on a 2-core CPU the compile costs more than short jobs gain.
    compile_layers: bool = False
    # Share the system+task prefix of a pair's chosen and rejected trajectories in one forward pass.
    share_prefix: bool = True
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Tokens per chunk when projecting hidden states to the vocabulary (bounds logits memory).
    logits_chunk: int = Field(1024, ge=1)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _kto_needs_a_batch(self) -> TrainConfig:
        if self.mode == "entropo-kto" and self.optim.batch_size < 2:
            raise ValueError("optim.batch_size must be >= 2 for entropo-kto: z0 is estimated from mismatched pairs in the batch")
        return self

    @property
    def alpha(self) -> float:
        return self.lam + self.beta


class ScoreConfig(Strict):
    model: str = DEFAULT_MODEL
    adapter: str | None = None
    data: DataConfig
    output: str
    # "trajectory": sum of assistant-token log-probs per conversation; "verifier": P(YES) per trajectory.
    kind: Literal["trajectory", "verifier"] = "trajectory"
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    logits_chunk: int = Field(1024, ge=1)


class ServeConfig(Strict):
    model: str = DEFAULT_MODEL
    # Name the base model is served under (the `model` field of requests).
    served_model_name: str = "smollm2-135m"
    adapters: dict[str, str] = {}
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_queue: int = Field(64, ge=1)  # requests waiting to be admitted; one more answers 503
    max_running: int = Field(32, ge=1)  # sequences generated at once (a request with n counts n)
    max_step_tokens: int = Field(256, ge=1)  # tokens per batched forward (decode tokens + prompt chunks)
    prefix_cache_mb: int = Field(2048, ge=0)  # KV kept across requests for prefix reuse (SmolLM2: 46 KB per token)
    # "torch": our batched PyTorch runtime (batching.py), exact fp32 log-probs. "llamacpp": llama.cpp's
    # llama-server behind the same API (llamacpp.py), faster on a CPU, F16 weights unless dtype is float32.
    runtime: Literal["torch", "llamacpp"] = "torch"
    # llamacpp only: CPU threads (1 stays fast when sandboxes share the cores; 2+ spin at barriers then) and
    # the KV cache in tokens (SmolLM2 in f16: 23 KB per token), split into kv_cache_tokens // context slots
    # of the model's full context (8 for SmolLM2), at most max_running.
    threads: int = Field(1, ge=1)
    kv_cache_tokens: int = Field(65536, ge=256)


def load_config(path: str | Path, model: type[Strict]) -> Strict:
    """Reads a JSON/YAML config and validates it; all problems are reported at once, each with its field path."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise InvalidInputError(f"{path}: cannot read config: {e.strerror}") from e
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise InvalidInputError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}") from e
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{path}: a config must be a mapping of fields, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise InvalidInputError(f"{path}: invalid config:\n{describe_validation_error(e)}") from e


def describe_validation_error(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  - {where}: {err['msg']}")
    return "\n".join(lines)
