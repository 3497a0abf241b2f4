"""Command line: python -m entropo_engine {train,score,serve} --config FILE | prepare-model [MODEL] | convert-adapter DIR

Progress is one JSON object per line on stdout; human-readable logs go to stderr. Exit codes: 0 done,
2 invalid config or data, 3 numerical failure, anything else is worth a retry (a retried train job
resumes from its newest checkpoint)."""

from __future__ import annotations

import argparse
import os
import sys

from .errors import EXIT_OK, InvalidInputError, NumericalError


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    parser = argparse.ArgumentParser(prog="entropo-engine", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("train", "train an adapter (sft, entropo-dpo, entropo-kto, verifier)"),
        ("score", "sequence log-probs of trajectories, or verifier P(YES)"),
        ("serve", "OpenAI-compatible HTTP server with run-time LoRA adapters"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", required=True, help="JSON or YAML config file")
    p = sub.add_parser("prepare-model", help="convert a GGUF (or the default model) into a cached model directory")
    p.add_argument("model", nargs="?", default="smollm2-135m")
    p = sub.add_parser("convert-adapter", help="convert a trained LoRA adapter to the GGUF the llamacpp runtime serves (cached)")
    p.add_argument("adapter", help="a PEFT adapter directory (a training job's adapter/)")
    p.add_argument("--model", default="smollm2-135m", help="the base model it was trained on")
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            from .config import TrainConfig, load_config
            from .trainer import train

            train(load_config(args.config, TrainConfig))
        elif args.command == "score":
            from .config import ScoreConfig, load_config
            from .scoring import score

            score(load_config(args.config, ScoreConfig))
        elif args.command == "serve":
            # The model thread's tiny per-sequence ops stall for milliseconds in OpenMP's spin-wait barrier
            # when other processes share the cores (measured: 1.4 s vs 0.1 s per decode step on a busy
            # 2-core machine); a passive wait avoids that. Set before torch starts its thread pool. The llamacpp
            # runtime starts llama-server without it (llamacpp.llama_server_env).
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            from .config import ServeConfig, load_config
            from .server import serve

            serve(load_config(args.config, ServeConfig))
        elif args.command == "convert-adapter":
            from .llamacpp import convert_adapter

            print(convert_adapter(args.adapter, args.model))
        else:
            from .models import resolve_model_dir

            print(resolve_model_dir(args.model))
    except (InvalidInputError, NumericalError) as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
