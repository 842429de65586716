"""How long `llamasc --help` takes, beside the interpreter's own start-up, in one run.

Target (foundation issue): `llamasc --help` under 0.3 s on a CI-size machine. Prints JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = int(os.environ.get("BENCH_RUNS", "15"))


def _time(argv: list[str]) -> list[float]:
    out = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    script = Path(sys.executable).with_name("llamasc")
    cli = [str(script)] if script.exists() else [shutil.which("llamasc") or "llamasc"]
    # Interleave nothing fancy: each case runs RUNS times back to back, all in this one run.
    cases = {
        "python_startup": [sys.executable, "-c", "pass"],
        # the library's lazy exports (llamasc.load & co.) must keep this near python_startup
        "import_llamasc": [sys.executable, "-c", "import llamasc"],
        "llamasc_help": [*cli, "--help"],
        "python_m_llamasc_help": [sys.executable, "-m", "llamasc", "--help"],
    }
    results = {name: _time(argv) for name, argv in cases.items()}
    med = {name: statistics.median(v) for name, v in results.items()}
    report = {
        "benchmark": "cli_help",
        "runs": RUNS,
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "min_s": {k: round(min(v), 4) for k, v in results.items()},
        "help_over_python_startup_ratio": round(med["llamasc_help"] / med["python_startup"], 2),
        "import_over_python_startup_ratio": round(med["import_llamasc"] / med["python_startup"], 2),
        "target_s": 0.3,
        "meets_target": med["llamasc_help"] <= 0.3,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
