"""Measure the Ray batch path: ``python -m core.cli.archive_bench --out weights/archive_bench.json``.

1. Scaling: the same folder of real images (chest X-rays of the Kermany and COVID-19 test parts) through the local
   CLI and through Ray with 1 and 2 workers, in one run: images/s, and the per-image overhead Ray adds.
2. Bounded memory: a synthetic archive (``--synthetic 50000`` images made here, in a temporary folder that is
   deleted afterwards, never committed) through Ray, sampling the resident memory of every process of the run
   (driver, Ray's own, the actors) once a second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(os.environ.get("SCANSIGHT_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def real_folder(folder: Path, n: int) -> Path:
    """`n` real chest X-rays (children's test set first, then adults' held-out part) copied into `folder`."""
    from core.data.chest import covid_split

    paths = sorted((DATA / "chest_xray" / "test").rglob("*.jpeg"))
    paths += [s.path for s in covid_split(DATA / "covid_radiography")[1]]
    folder.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(paths[:n]):
        shutil.copyfile(path, folder / f"{index:06d}{path.suffix}")
    return folder


def synthetic_archive(folder: Path, n: int, side: int = 160) -> Path:
    """`n` distinct chest-like grey PNGs (a body, two darker lungs, noise) in 100 sub-folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side] / side
    body = ((xx - 0.5) ** 2 / 0.16 + (yy - 0.55) ** 2 / 0.2) < 1
    lungs = (((xx - 0.33) ** 2 / 0.012 + (yy - 0.5) ** 2 / 0.05) < 1) | (
        ((xx - 0.67) ** 2 / 0.012 + (yy - 0.5) ** 2 / 0.05) < 1
    )
    base = np.where(body, 0.7, 0.05) - np.where(lungs, 0.45, 0.0)
    for index in range(n):
        sub = folder / f"{index % 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        picture = np.clip(base + rng.normal(0, 0.04, base.shape), 0, 1)
        Image.fromarray((picture * 255).astype(np.uint8)).save(sub / f"{index:06d}.png", compress_level=1)
    return folder


def _session_rss_mb() -> float:
    """Resident memory of this process and of every Ray process on the machine, MB (one sample)."""
    total = 0.0
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if int(entry.name) != me and b"ray" not in command and b"ArchivePredictor" not in command:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except (OSError, ValueError):
            continue
    return total


class MemorySampler:
    """Samples `_session_rss_mb` once a second in a thread: the peak and the series."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append(_session_rss_mb())

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def local_rate(folder: Path, task: str) -> float:
    """The local CLI's rate as `python -m core.predict` runs by default: gate + model through TensorFlow Lite."""
    from core.cli.archive import lite_forward
    from core.cli.predict import expand, predict_files
    from core.models.scan_model import ScanModel

    model, gate = ScanModel.load(task), ScanModel.load("gate")
    lite_forward([model, gate])  # outside the timing, as the CLI does before its first image
    files = expand([folder])
    start = time.perf_counter()
    predict_files(files, model, progress=False, gate=gate)
    return len(files) / (time.perf_counter() - start)


def ray_rate(folder: Path, out: Path, workers: int, task: str) -> dict[str, Any]:
    from core.cli.archive import run_archive

    result = run_archive([folder], out, task=task, workers=workers, log=lambda _: None)
    return {"images": result.written, "seconds": round(result.seconds, 2),
            "images_per_s": round(result.written / result.seconds, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.cli.archive_bench", description=__doc__)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--images", type=int, default=2000, help="real images for the scaling runs")
    parser.add_argument("--synthetic", type=int, default=0, help="images in the synthetic memory run (0: skip)")
    parser.add_argument("--task", default="pneumonia")
    args = parser.parse_args(argv)
    import ray

    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "date": time.strftime("%Y-%m-%d"),
        "task": args.task, "note": "each run includes starting the actors and loading the models (about 10-20 s)",
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="scansight-bench-") as scratch:
        scratch = Path(scratch)
        folder = real_folder(scratch / "real", args.images)
        result["local_cli_images_per_s"] = round(local_rate(folder, args.task), 1)
        print(f"local CLI: {result['local_cli_images_per_s']} images/s")
        for workers in (1, 2):
            row = ray_rate(folder, scratch / f"out-{workers}", workers, args.task)
            result[f"ray_{workers}_worker"] = row
            print(f"ray, {workers} worker(s): {row}")
        ray.shutdown()
        per_local = 1 / result["local_cli_images_per_s"]
        per_ray = 1 / result["ray_1_worker"]["images_per_s"]
        result["ray_overhead_ms_per_image_1_worker"] = round((per_ray - per_local) * 1000, 2)
        if args.synthetic:
            started = time.perf_counter()
            archive = synthetic_archive(scratch / "synthetic", args.synthetic)
            made = time.perf_counter() - started
            size_mb = sum(p.stat().st_size for p in archive.rglob("*.png")) / 1e6
            with MemorySampler() as sampler:
                row = ray_rate(archive, scratch / "out-synthetic", 2, args.task)
            ray.shutdown()
            samples = sampler.samples or [float("nan")]
            quarters = [samples[i * len(samples) // 4 : max((i + 1) * len(samples) // 4, i * len(samples) // 4 + 1)]
                        for i in range(4)]  # fmt: skip
            import pyarrow.parquet as pq

            table = pq.read_table(next((scratch / "out-synthetic").glob("part-*.parquet")), columns=["label", "gate"])
            labels = table.column("label").to_pylist()
            result["synthetic"] = {
                **row, "archive_mb_on_disk": round(size_mb, 1), "made_in_s": round(made, 1),
                "rss_mb_peak_all_processes": round(max(samples), 1),
                "rss_mb_max_by_quarter_of_the_run": [round(max(q), 1) for q in quarters], "rss_samples": len(samples),
                "rows_with_a_label": sum(1 for v in labels if v), "rows_refused_by_the_gate": sum(
                    1 for v in table.column("gate").to_pylist() if v.startswith("refused")),
            }  # fmt: skip
            print(f"synthetic: {result['synthetic']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
