"""Model discovery at scale: 2,000 generated GGUF headers in 200 folders, in one run.

Measures the start-up scan (no header cache: every header read), a rescan when nothing
changed (the daemon's ``POST /models?reload=1`` / ``--watch-models`` poll: one stat per file,
no header read), and a rescan after one file changed. Target (issue 16): the no-change
rescan under 1 s. Prints JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the GGUF writer the tests use
sys.path.insert(0, str(ROOT / "src"))

FOLDERS = int(os.environ.get("BENCH_FOLDERS", "200"))
PER_FOLDER = int(os.environ.get("BENCH_PER_FOLDER", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
TARGET_RESCAN_S = 1.0


def _generate(root: Path) -> int:
    from gguf import LlamaFileType

    from gguf_factory import write_gguf, write_projector

    template = write_gguf(root / "_template.gguf", vocab=2000)
    data = template.read_bytes()
    proj = write_projector(root / "_proj.gguf", LlamaFileType.MOSTLY_F16).read_bytes()
    template.unlink()
    (root / "_proj.gguf").unlink()
    n = 0
    for f in range(FOLDERS):
        folder = root / f"vendor{f % 20}" / f"family{f}"
        folder.mkdir(parents=True)
        for i in range(PER_FOLDER):
            if i == 0:
                (folder / "mmproj-F16.gguf").write_bytes(proj)
            else:
                (folder / f"Model{f}-{i}B-Q4_K_M.gguf").write_bytes(data)
            n += 1
    return n


def _settings(root: Path):  # type: ignore[no-untyped-def]
    from llamasc.config.settings import Settings

    return Settings(models_dirs=(root,))


def main() -> None:
    from llamasc.config.catalog import build_catalog
    from llamasc.config.discovery import Scanner

    with tempfile.TemporaryDirectory(prefix="bench-discovery-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        files = _generate(root)
        gen_s = time.perf_counter() - t0
        settings = _settings(root)
        startup, rescan, changed = [], [], []
        models = 0
        for _ in range(RUNS):
            scanner = Scanner()
            t0 = time.perf_counter()
            found = build_catalog(settings, scanner=scanner)
            startup.append(time.perf_counter() - t0)
            models = len(found.catalog)
            t0 = time.perf_counter()
            again = build_catalog(settings, scanner=scanner, strict=False)
            rescan.append(time.perf_counter() - t0)
            assert again.catalog.models == found.catalog.models
            reads = scanner.cache.reads
            victim = next(iter(found.catalog.models.values())).path
            st = victim.stat()
            os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
            t0 = time.perf_counter()
            build_catalog(settings, scanner=scanner, strict=False)
            changed.append(time.perf_counter() - t0)
            assert scanner.cache.reads == reads + 1  # only the changed header was read
        med_rescan = statistics.median(rescan)
        report = {
            "benchmark": "discovery",
            "files": files,
            "folders": FOLDERS,
            "models": models,
            "runs": RUNS,
            "generate_s": round(gen_s, 3),
            "startup_scan_s": {"median": round(statistics.median(startup), 4),
                               "min": round(min(startup), 4)},
            "rescan_no_change_s": {"median": round(med_rescan, 4), "min": round(min(rescan), 4)},
            "rescan_one_changed_s": {"median": round(statistics.median(changed), 4)},
            "startup_over_rescan": round(statistics.median(startup) / med_rescan, 2),
            "target_rescan_s": TARGET_RESCAN_S,
            "rescan_target_met": med_rescan < TARGET_RESCAN_S,
        }  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
