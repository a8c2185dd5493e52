"""Benchmark: ``python -m core.bench --out bench.json``.

Measures TensorFlow import and model load times, per-model latency (decode + preprocess + predict +
Grad-CAM, or + segment + overlay) as p50 / p95 over repeated single uploads, batch throughput of the
pneumonia model, the process's resident memory with every model loaded, and the app's cold start
(process start until the first page is served on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SCANSIGHT_DATA", REPO.parent / "shared" / "data"))


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process (this one by default), MB."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def sample_upload(modality: str) -> tuple[str, bytes]:
    """A real held-out image when the data folder is there, else a generated one of the same size."""
    if modality == "chest-xray":
        folder = DATA / "chest_xray" / "test" / "PNEUMONIA"
        if folder.is_dir():
            path = sorted(folder.iterdir())[0]
            return path.name, path.read_bytes()
        rng = np.random.default_rng(0)
        return "generated.png", _png((rng.random((224, 224)) * 255).astype(np.uint8))
    if modality == "ct" and (folder := DATA / "covid_ct_seg" / "test" / "images").is_dir():
        path = sorted(folder.iterdir())[0]
        return path.name, path.read_bytes()
    folder = DATA / "lgg_mri"
    if folder.is_dir():
        path = sorted(p for p in folder.rglob("*.jpg"))[0]
        return path.name, path.read_bytes()
    rng = np.random.default_rng(0)
    return "generated.png", _png((rng.random((256, 256, 3)) * 255).astype(np.uint8))


def percentiles(samples: list[float]) -> dict[str, float]:
    values = np.array(samples) * 1000
    return {"p50_ms": round(float(np.percentile(values, 50)), 1), "p95_ms": round(float(np.percentile(values, 95)), 1)}


def timed(once, repeats: int, warm_up: int = 3) -> list[float]:
    """Seconds per call of `once()` over `repeats` calls, after `warm_up` calls (tracing, caches)."""
    for _ in range(warm_up):
        once()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        samples.append(time.perf_counter() - start)
    return samples


def time_model(model, repeats: int) -> dict[str, Any]:
    from core.explain.gradcam import heatmap
    from core.explain.overlay import mask_overlay, overlay
    from core.io.loading import load_image
    from core.tasks.segmentation import segment

    name, data = sample_upload(model.card.modality)

    def once() -> None:
        image = load_image(data, name)
        if model.card.task == "segmentation":
            result = segment(model, image)
            mask_overlay(image.frame(), result.mask)
        else:
            model.predict(image)
            overlay(image.frame(), heatmap(model, image))

    samples = timed(once, repeats)
    what = (
        "decode + segment + overlay" if model.card.task == "segmentation" else "decode + predict + Grad-CAM + overlay"
    )
    return {**percentiles(samples), "measures": what, "input": name, "repeats": repeats}


def time_full_chest_path(models: dict[str, Any], repeats: int) -> dict[str, Any]:
    """What the Prediction page does for one upload: decode, the gate, the source check, predict,
    Grad-CAM and the overlay."""
    from core.checks.shortcut import adult_probability
    from core.explain.gradcam import heatmap
    from core.explain.overlay import overlay
    from core.io.loading import load_image
    from core.tasks.gate import check_image

    name, data = sample_upload("chest-xray")
    model = models["pneumonia"]

    def once() -> None:
        image = load_image(data, name)
        check_image(models["gate"], image)
        if "chest-backbone" in models:
            adult_probability(models["chest-backbone"], image)
        model.predict(image)
        overlay(image.frame(), heatmap(model, image))

    samples = timed(once, repeats)
    what = "decode + gate + source check + predict + Grad-CAM + overlay"
    return {**percentiles(samples), "measures": what, "input": name, "repeats": repeats}


def time_page_path_through_worker(repeats: int) -> dict[str, Any]:
    """What the Prediction page does for one upload since issue 11: decode in the decoding process, then the
    gate, the source check, predict and Grad-CAM in the model process, and the overlay here."""
    from core.explain.overlay import overlay
    from core.io.loading import load_image
    from core.models.worker import WorkerPool
    from core.tasks import inference

    name, data = sample_upload("chest-xray")
    decoder, models = WorkerPool("decoder"), WorkerPool("model")
    try:
        models.call(inference.load_every_model)

        def once() -> None:
            image = decoder.call(load_image, data, name)
            pixels = image.frame(0)
            models.call(inference.gate_check, pixels)
            models.call(inference.adult_probability, pixels)
            _, cam = models.call(inference.classify_and_explain, "pneumonia", pixels)
            overlay(pixels, cam)

        samples = timed(once, repeats)
        worker_mb = rss_mb(models.pids()[0])
        decoder_mb = rss_mb(decoder.pids()[0])
    finally:
        decoder.close()
        models.close()
    what = "decode (decoding process) + gate + source check + predict + Grad-CAM (model process) + overlay"
    return {
        **percentiles(samples), "measures": what, "input": name, "repeats": repeats,
        "model_process_rss_mb_all_models": round(worker_mb, 1), "decoding_process_rss_mb": round(decoder_mb, 1),
    }  # fmt: skip


def time_ct_page(repeats: int) -> dict[str, Any]:
    """What the CT page does for one slice: decode, the infection mask, the lungs and the share, the overlay."""
    from core.explain.overlay import mask_overlay
    from core.io.loading import load_image
    from core.tasks import inference

    name, data = sample_upload("ct")

    def once() -> None:
        image = load_image(data, name)
        result, _, _ = inference.ct_infection_and_lungs(image.frame(0))
        mask_overlay(image.frame(0), result.mask)

    samples = timed(once, repeats)
    what = "decode + infection mask + lungs + share + overlay"
    return {**percentiles(samples), "measures": what, "input": name, "repeats": repeats}


def time_mri_study(n_slices: int = 60, repeats: int = 3) -> dict[str, Any]:
    """What the Brain MRI page's study mode does for a 60-slice study: read (decode) every slice, masks with the
    card's flip and 3-D filter, measure the volume. Slices are a test patient's, repeated to 60 when shorter."""
    from core.tasks import inference
    from core.tasks.mri_study import measure_study, read_study

    sample = REPO / "assets" / "samples" / "brain-mri-lgg-study-patient-1.zip"
    if not sample.is_file():
        return {}
    import zipfile

    with zipfile.ZipFile(sample) as archive:
        slices = [(n, archive.read(n)) for n in sorted(archive.namelist()) if "_mask" not in n]
    files = [(f"s_{i:03d}.jpg", slices[i % len(slices)][1]) for i in range(n_slices)]

    def once() -> None:
        study = read_study(files)
        measure_study(study, inference.segment_study([item.pixels for item in study.slices]))

    samples = timed(once, repeats, warm_up=1)
    return {
        "p50_ms": round(float(np.median(samples)) * 1000, 1), "p95_ms": round(float(np.max(samples)) * 1000, 1),
        "measures": f"a {n_slices}-slice study: decode + masks (flip, 3-D filter) + volume", "repeats": repeats,
    }  # fmt: skip


def batch_throughput(model, n: int = 256, batch_size: int = 64) -> float:
    from core.data.chest import list_labelled
    from core.io.loading import load_image

    folder = DATA / "chest_xray" / "test"
    if folder.is_dir():
        payloads = [(s.path.name, s.path.read_bytes()) for s in list_labelled(folder, ["NORMAL", "PNEUMONIA"])[:n]]
    else:
        payloads = [sample_upload("chest-xray")] * n
    start = time.perf_counter()
    for offset in range(0, len(payloads), batch_size):
        chunk = payloads[offset : offset + batch_size]
        model.probabilities(np.stack([model.prepare(load_image(data, name)) for name, data in chunk]))
    return len(payloads) / (time.perf_counter() - start)


def cold_start(timeout: float = 60.0) -> tuple[float | None, float | None]:
    """Seconds from `streamlit run app.py` until the health endpoint and the first page answer, and the
    server's resident memory then (MB)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while time.perf_counter() - start < timeout:
            try:
                for path in ("/_stcore/health", "/"):
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
                        reply.read()
                seconds = time.perf_counter() - start
                return seconds, round(rss_mb(process.pid), 1)
            except OSError:
                time.sleep(0.1)
        return None, None
    finally:
        process.terminate()
        process.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.bench", description=__doc__)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-cold-start", action="store_true")
    parser.add_argument("--memory", action="store_true", help="also decode core.cli.memory_check's hostile files")
    args = parser.parse_args(argv)

    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    start = time.perf_counter()
    import tensorflow as tf  # noqa: F401

    result["tensorflow_import_s"] = round(time.perf_counter() - start, 2)
    from core.models.scan_model import ScanModel, available_models

    models, load_times = {}, {}
    for name, card in available_models().items():
        start = time.perf_counter()
        models[name] = ScanModel.load(card)
        load_times[name] = round(time.perf_counter() - start, 2)
    result["model_load_s"] = load_times
    result["models"] = {name: time_model(model, args.repeats) for name, model in models.items() if model.card.deployed}
    if "gate" in models and "pneumonia" in models:
        result["models"]["pneumonia, full page path"] = time_full_chest_path(models, args.repeats)
        through = time_page_path_through_worker(args.repeats)
        result["models"]["pneumonia, page path via workers"] = through
    if "ct-lungs" in models and "ct-infection" in models:
        result["models"]["CT page path"] = time_ct_page(args.repeats)
    if "mri-segmentation" in models and (study := time_mri_study()):
        result["models"]["MRI study, 60 slices"] = study
    result["rss_mb"] = round(rss_mb(), 1)
    if "pneumonia" in models:
        result["batch_images_per_s_tensorflow"] = round(batch_throughput(models["pneumonia"]), 1)
        lite = ScanModel(models["pneumonia"].card, models["pneumonia"].keras_model)
        result["batch_forward"] = "tflite" if lite.use_lite() else "tensorflow (TensorFlow Lite did not convert)"
        result["batch_images_per_s"] = round(batch_throughput(lite), 1)
    if not args.no_cold_start:
        seconds, server_mb = cold_start()
        result["cold_start_s"] = None if seconds is None else round(seconds, 2)
        result["app_server_rss_mb_idle"] = server_mb
    if "pneumonia, page path via workers" in result["models"]:
        row = result["models"]["pneumonia, page path via workers"]
        result["app_total_rss_mb_all_models"] = round(
            (result.get("app_server_rss_mb_idle") or 0) + row["model_process_rss_mb_all_models"]
            + row["decoding_process_rss_mb"], 1,
        )  # fmt: skip
    if args.memory:
        from core.cli.memory_check import run as memory_run

        result["upload_memory_mb"] = memory_run()
    from core.runtime import cpu_model, in_effect

    result["cpu"] = cpu_model()
    result["tf_runtime"] = in_effect()

    print(f"{'model':<20}{'p50 ms':>10}{'p95 ms':>10}  what")
    for name, row in result["models"].items():
        print(f"{name:<20}{row['p50_ms']:>10}{row['p95_ms']:>10}  {row['measures']}")
    for key in ("tensorflow_import_s", "rss_mb", "batch_images_per_s", "batch_images_per_s_tensorflow", "cold_start_s",
                "app_server_rss_mb_idle", "app_total_rss_mb_all_models"):  # fmt: skip
        if key in result:
            print(f"{key:<20}{result[key]:>10}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
