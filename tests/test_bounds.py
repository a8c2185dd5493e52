"""Bounded memory for every upload (issue 11, item 4) and outputs that cannot be turned against their reader
(item 5). The hostile files are made by code (`core.cli.memory_check`), never committed."""

from __future__ import annotations

import csv
import io
import os

import pytest

from core.cli import memory_check
from core.cli.predict import main
from core.errors import CorruptImageError, ImageTooLargeError, ScanSightError, UnsupportedFileError
from core.io.archives import unzip_in_memory
from core.io.loading import MAX_DECODED_VALUES, load_image, read_capped
from core.tasks.batch import BatchRow, safe_cell, write_csv
from tests.helpers import png_bytes, synthetic_chest


@pytest.mark.slow
def test_every_hostile_or_largest_allowed_file_stays_below_the_memory_budget():
    results = memory_check.run()
    assert set(results) == set(memory_check.CASES)
    for case, row in results.items():
        assert row.get("total_mb") is not None, f"{case}: {row.get('error')}"
        assert row["total_mb"] < memory_check.BUDGET_MB, f"{case}: {row['total_mb']} MB"
        assert not any("WorkerFailedError" in outcome for outcome in row["outcome"]), f"{case}: {row['outcome']}"
    assert results["largest-grey-png"]["outcome"] == ["loaded (1, 7000, 7000)"]
    assert results["largest-dicom-series"]["outcome"] == ["loaded (240, 512, 512)"]
    assert "ImageTooLargeError" in results["png-bomb"]["outcome"][0]


def test_a_tiff_of_many_colour_pages_is_refused_from_its_headers():
    with pytest.raises(ImageTooLargeError, match="million values"):
        load_image(memory_check.tiff_of_colour_pages(pages=200, side=400), "colour.tif")


def test_a_multiframe_dicom_over_the_limit_is_refused_before_its_pixels_are_read():
    frames = MAX_DECODED_VALUES // (128 * 128) + 1
    with pytest.raises(ImageTooLargeError, match="million values"):
        load_image(memory_check.dicom_frames(frames, 128, 128), "many.dcm")


def test_a_dicom_without_its_preamble_loads():
    data = memory_check.dicom_frames(2, 64, 64)
    assert load_image(data[128:], "no-preamble.dcm").frames.shape == (2, 64, 64)


def test_palette_colour_dicom_without_its_table_is_named_as_such():
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(memory_check.dicom_frames(1, 64, 64)))
    dataset.PhotometricInterpretation = "PALETTE COLOR"
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    with pytest.raises(CorruptImageError, match="colour table"):
        load_image(buffer.getvalue(), "palette.dcm")


def test_devices_and_fifos_are_refused_before_reading(tmp_path):
    with pytest.raises(UnsupportedFileError, match="not a regular file"):
        read_capped("/dev/zero")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(UnsupportedFileError):
        read_capped(fifo)  # would hang if it were opened
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 2048)
    with pytest.raises(ImageTooLargeError):
        read_capped(big, limit=1024)


def test_zip_limits_encrypted_members_and_lying_sizes():
    with pytest.raises(ImageTooLargeError, match="unpacks to"):
        unzip_in_memory(memory_check.zip_of_zeros(256))
    members = dict(unzip_in_memory(memory_check.zip_of({"a.png": png_bytes(synthetic_chest()), "b.png": b"x"})))
    assert isinstance(members["a.png"], bytes) and members["b.png"] == b"x"
    # An encrypted member (flag bit 0 set by hand: the standard library cannot write encrypted zips).
    buffer = io.BytesIO(memory_check.zip_of({"secret.png": b"data"}))
    raw = bytearray(buffer.getvalue())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        position = raw.find(signature)
        raw[position + offset] |= 1
    ((_, outcome),) = unzip_in_memory(bytes(raw))
    assert isinstance(outcome, ScanSightError) and "encrypted" in str(outcome)


@pytest.mark.parametrize(
    "name",
    ["=1+2+HYPERLINK(\"http://x\")", "+SUM(A1)", "-2+3", "@cmd", "\udcff\udcfe-not-utf8.png", "tab\there.png",
     "x" * 1_000_000, "--leading-dash.png"],
)  # fmt: skip
def test_csv_cells_are_safe_for_any_file_name(name):
    buffer = io.StringIO()
    first = BatchRow(file=name, label="NORMAL", probabilities={"NORMAL": 0.5, "PNEUMONIA": 0.5})
    write_csv([first, BatchRow(file="next.png")], buffer)
    buffer.getvalue().encode("utf-8")  # always valid UTF-8
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert len(rows) == 2 and rows[1]["file"] == "next.png"  # the row after it is not lost
    cell = rows[0]["file"]
    assert not cell.startswith(("=", "+", "-", "@")) and len(cell) <= 256 and cell.isprintable()
    assert rows[0]["p_NORMAL"] == "0.5"


def test_safe_cell_keeps_numbers_and_plain_names():
    assert safe_cell(0.25) == 0.25 and safe_cell("chest.png") == "chest.png" and safe_cell(None) == ""


def test_the_csv_path_is_checked_before_any_work(tmp_path, capsys):
    image = tmp_path / "chest.png"
    image.write_bytes(png_bytes(synthetic_chest()))
    with pytest.raises(SystemExit, match="does not exist"):
        main([str(image), "--task", "pneumonia", "--csv", str(tmp_path / "missing" / "out.csv"), "--no-gate"])


def test_a_zip_given_to_the_cli_is_read_member_by_member(tmp_path, capsys):
    archive = tmp_path / "set.zip"
    archive.write_bytes(memory_check.zip_of({"a.png": png_bytes(synthetic_chest()), "broken.png": b"\x89PNG\r\n"}))
    out = tmp_path / "out.csv"
    assert main([str(archive), "--task", "pneumonia", "--csv", str(out), "--no-gate"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [row["file"].rsplit("/", 1)[-1] for row in rows] == ["a.png", "broken.png"]
    assert rows[0]["label"] and rows[1]["error"]
