#!/usr/bin/env bash
# The main job on the embedded defaults: installs what is missing (setup builds the bundled suites from
# pinned PyPI sdists), starts the embedded Temporal dev server and in-process workers (cpu, sandbox, llm,
# gpu), and runs the whole EntroPO pipeline of configs/quickstart.yaml: the demonstrator teaches on the
# quickstart suite, SmolLM2-135M is fine-tuned (SFT, then EntroPO-DPO) and served on this CPU by the engine,
# rolls out in bubblewrap sandboxes, and is tested with test-time scaling on the held-out test suite. It
# ends by printing the report's path and the Temporal UI address. Run it again to resume (or to see the
# finished run); `--run-id NAME` starts another run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=$(date +%s)
bash infra/setup.sh
echo "setup took $(( $(date +%s) - started )) s" >&2
exec bin/entropo run configs/quickstart.yaml "$@"
