"""The GPU benchmark script runs (tiny shape, CPU), so it still works when a GPU machine is lent."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_gpu.py"


def test_gpu_benchmark_script_runs_in_smoke_mode():
    out = subprocess.run([sys.executable, str(BENCH), "--smoke", "--repeats", "1", "--profile"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "shared once" in out.stdout and "run twice" in out.stdout and "speed-up from sharing the prefix" in out.stdout
    # --profile splits one step per mode by kernel kind; on CPU the matrix products are aten::mm ops
    assert out.stdout.count("profiled step") == 2 and "matrix products" in out.stdout
