"""Peak memory of decoding hostile and largest-allowed files (``python -m core.cli.memory_check --out FILE``).

The files are made here, by code, in a temporary folder (nothing is committed): the attacks from issue 11
(a 1 MB TIFF of 512 colour pages, a TIFF with a small first page and huge later ones, a 157 KB PNG bomb,
multi-frame DICOMs of ~200 MB, a zip of 1 GB of zeros, a zip of PNG bombs) and the largest files the limits
allow (a 50-megapixel 16-bit PNG, a 21-megapixel colour PNG, a 64-million-value 16-bit DICOM series).

Each file is decoded the way the app does it, in a fresh process: the upload's bytes are read, then decoded in
a `decode_pool`-style worker (address-space limit on). The figure is the server's growth plus the worker's
growth above its idle size: the memory one upload costs above the idle server.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
BUDGET_MB = 1536  # the bound: below 1.5 GB above the idle server


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def png_bomb() -> bytes:
    """7070 x 7070 RGB of zeros: 157 KB on disk, 150 MB of pixels."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (7070, 7070)).save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def tiff_of_colour_pages(pages: int = 512, side: int = 625) -> bytes:
    """512 RGB pages of 625 x 625 (200 megapixels in all) in about 1 MB."""
    from PIL import Image

    first = Image.new("RGB", (side, side), (10, 200, 30))
    buffer = io.BytesIO()
    first.save(buffer, format="TIFF", save_all=True, append_images=[first] * (pages - 1), compression="tiff_deflate")
    return buffer.getvalue()


def tiff_small_then_huge() -> bytes:
    from PIL import Image

    small = Image.new("L", (64, 64))
    huge = Image.new("L", (7000, 7000))
    buffer = io.BytesIO()
    small.save(buffer, format="TIFF", save_all=True, append_images=[huge] * 3, compression="tiff_deflate")
    return buffer.getvalue()


def dicom_frames(frames: int, rows: int, columns: int) -> bytes:
    """A multi-frame 16-bit MONOCHROME2 DICOM of zeros (Explicit VR Little Endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID, "MR"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    pixels = np.zeros((frames, rows, columns), np.uint16)
    pixels[:, rows // 4 : rows // 2, columns // 4 : columns // 2] = 1000
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def zip_of_zeros(megabytes: int = 1024) -> bytes:
    buffer = io.BytesIO()
    chunk = bytes(1024 * 1024)
    with (
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("zeros.png", "w", force_zip64=True) as handle,
    ):
        for _ in range(megabytes):
            handle.write(chunk)
    return buffer.getvalue()


def largest_grey_png() -> bytes:
    """7,000 x 7,000 16-bit grey (49 megapixels: just under the per-image limit)."""
    array = np.zeros((7000, 7000), np.uint16)
    array[1000:6000, 1000:6000] = 40000
    return _png(array)


def largest_colour_png() -> bytes:
    """4,600 x 4,600 colour (63.5 million values: just under the decoded-size limit)."""
    array = np.zeros((4600, 4600, 3), np.uint8)
    array[..., 1] = 200
    array[:2300, :, 0] = 255
    return _png(array)


#: name -> (maker, what it is). Each is decoded as the app would (a zip: every member, one after another).
CASES: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "tiff-512-colour-pages": (tiff_of_colour_pages, "colour.tif", "1 MB TIFF, 512 RGB pages, 200 megapixels"),
    "tiff-small-then-huge": (tiff_small_then_huge, "stack.tif", "64 px first page, three 7000 x 7000 pages"),
    "png-bomb": (png_bomb, "bomb.png", "157 KB PNG, 7070 x 7070 RGB"),
    "dicom-199MB": (lambda: dicom_frames(760, 512, 256), "big.dcm", "760 frames of 512 x 256, 16-bit"),
    "zip-1GB-zeros": (zip_of_zeros, "zeros.zip", "1 MB zip holding 1 GB of zeros"),
    "zip-png-bombs": (lambda: zip_of({f"b{i}.png": png_bomb() for i in range(20)}), "bombs.zip", "20 PNG bombs"),
    "largest-grey-png": (largest_grey_png, "grey16.png", "7000 x 7000 16-bit grey (allowed)"),
    "largest-colour-png": (largest_colour_png, "colour.png", "4600 x 4600 colour (allowed)"),
    "largest-dicom-series": (lambda: dicom_frames(240, 512, 512), "series.dcm", "240 frames of 512 x 512 (allowed)"),
}

PROBE = r"""
import json, sys, time
import core
from core.io.loading import load_image
from core.errors import ScanSightError
from core.cli.predict import unzip_in_memory
from core.models.worker import DECODE_MEMORY_LIMIT_BYTES, WorkerPool

def rss(pid="self", field="VmRSS"):
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024

path, name = sys.argv[1], sys.argv[2]
pool = WorkerPool("decoder", memory_limit_bytes=DECODE_MEMORY_LIMIT_BYTES)
pool.call(len, b"")
child = pool.pids()[0]
for pid in ("self", child):  # peak counters start again from the idle size
    with open(f"/proc/{pid}/clear_refs", "w") as handle:
        handle.write("5")
child_idle = rss(child)
parent_idle = rss()
data = open(path, "rb").read()
outcomes = []
start = time.perf_counter()
try:
    members = unzip_in_memory(data) if name.endswith(".zip") else [(name, data)]
except ScanSightError as error:
    members = [(name, error)]
if name.endswith(".zip"):
    del data
for member, content in members:
    try:
        if isinstance(content, ScanSightError):
            raise content
        image = pool.call(load_image, content, member)
        outcomes.append(f"loaded {image.frames.shape}")
        del image
    except ScanSightError as error:
        outcomes.append(f"{type(error).__name__}: {error}")
seconds = time.perf_counter() - start
parent_peak = rss("self", "VmHWM")
child_peak = rss(child, "VmHWM")
print("RESULT" + json.dumps({
    "server_mb": round(max(0.0, parent_peak - parent_idle), 1),
    "worker_mb": round(max(0.0, child_peak - child_idle), 1),
    "outcome": sorted(set(outcomes))[:3], "seconds": round(seconds, 2),
}))
pool.close()
"""


def measure(path: Path, name: str) -> dict:
    """Decode one file as the app does, in a fresh process; the memory it cost above idle."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), name], cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    for line in done.stdout.splitlines():
        if line.startswith("RESULT"):
            result = json.loads(line[6:])
            result["total_mb"] = round(result["server_mb"] + result["worker_mb"], 1)
            return result
    return {"error": f"exit code {done.returncode}: {done.stderr[-500:]}", "total_mb": None}


def run(names: list[str] | None = None) -> dict[str, dict]:
    results = {}
    with tempfile.TemporaryDirectory(prefix="scansight-memory-") as folder:
        for case, (make, file_name, what) in CASES.items():
            if names and case not in names:
                continue
            path = Path(folder) / file_name
            path.write_bytes(make())
            size = path.stat().st_size
            results[case] = {"what": what, "file_mb": round(size / 1e6, 2), **measure(path, file_name)}
            path.unlink()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.cli.memory_check", description=__doc__)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--case", action="append", help="only these cases (default: all)")
    args = parser.parse_args(argv)
    results = run(args.case)
    print(f"{'case':<24}{'file MB':>9}{'server MB':>11}{'worker MB':>11}{'total MB':>10}{'s':>7}  outcome")
    for case, row in results.items():
        print(
            f"{case:<24}{row['file_mb']:>9}{row.get('server_mb', '-')!s:>11}{row.get('worker_mb', '-')!s:>11}"
            f"{row.get('total_mb', '-')!s:>10}{row.get('seconds', '-')!s:>7}  {row.get('outcome') or row.get('error')}"
        )
    if args.out:
        payload = {"date": time.strftime("%Y-%m-%d"), "budget_mb": BUDGET_MB, "cases": results}
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    worst = max((row["total_mb"] or 0) for row in results.values()) if results else 0
    print(f"worst: {worst} MB (budget {BUDGET_MB} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
