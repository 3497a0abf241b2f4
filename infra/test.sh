#!/usr/bin/env bash
# Runs every test: installs what is missing (infra/setup.sh), then lint, type check and the vitest suite
# (unit tests, real-bwrap sandbox tests, workflows against a real Temporal dev server, replay), and the
# engine's pytest suite (losses against closed forms, masks, trainer resume, the real SmolLM2 model).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash infra/setup.sh
echo "[test] lint + typecheck" >&2
npx --no-install biome check .
npx --no-install tsc --noEmit
echo "[test] engine (pytest)" >&2
.venv/bin/python -m pytest -q engine/tests
echo "[test] vitest" >&2
npx --no-install vitest run "$@"
