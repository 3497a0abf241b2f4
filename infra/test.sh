#!/usr/bin/env bash
# Runs every test: installs what is missing (infra/setup.sh), then lint, type check and the vitest suite
# (unit tests, the sandbox suites on real bwrap and a real Docker engine, workflows against a real Temporal
# dev server, replay, the task builder on real packages), and the pytest suites of the engine (losses
# against closed forms, masks, trainer resume, the real SmolLM2 model) and of the builder's mutation finder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash infra/setup.sh
# The docker backend's suites need a Docker engine and the base image. As root, both are made here (dockerd
# started when none answers, the image built once and kept by the engine), and their absence is a failure.
if [ "$(id -u)" = 0 ]; then
  bash infra/dockerd.sh
  node --import ./node_modules/tsx/dist/loader.mjs infra/buildImages.ts base
  export ENTROPO_REQUIRE_DOCKER=1
elif ! bash infra/dockerd.sh; then
  echo "[test] WARNING: no Docker engine: the docker sandbox suites will report themselves as not run" >&2
fi
echo "[test] lint + typecheck" >&2
npx --no-install biome check .
npx --no-install tsc --noEmit
echo "[test] engine and task builder (pytest)" >&2
.venv/bin/python -m pytest -q engine/tests activities/taskbuilder/tests
echo "[test] vitest" >&2
npx --no-install vitest run "$@"
