"""Worker processes: a native crash ends one request with a message; the next request and other callers go on."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from core.models.scan_model import ScanModel
from core.models.worker import ABORT_TAG_VARIABLE, WorkerFailedError, WorkerPool, WorkerStoppedError
from core.tasks import inference


def allocate(megabytes: int) -> int:
    return len(bytearray(megabytes * 1024 * 1024))


def sleep_for(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def raise_untyped() -> None:
    raise KeyError("patient 123")  # the message must not travel: only the type


@pytest.fixture(scope="module")
def pool():
    pool = WorkerPool("model", size=1, timeout_s=120)
    yield pool
    pool.close()


@pytest.mark.slow
def test_a_model_call_in_the_worker_equals_the_call_in_process(pool):
    pixels = np.random.default_rng(0).random((224, 224), dtype=np.float32)
    remote_prediction, remote_cam = pool.call(inference.classify_and_explain, "pneumonia", pixels)
    local = ScanModel.load("pneumonia").predict(pixels)
    assert remote_prediction.label == local.label
    assert remote_prediction.probabilities == pytest.approx(local.probabilities, abs=1e-5)
    assert remote_cam.shape == (224, 224)


@pytest.mark.slow
def test_an_abort_ends_that_request_only_and_the_next_one_works(pool, monkeypatch):
    pixels = np.random.default_rng(1).random((224, 224), dtype=np.float32)
    pool.call(inference.classify_and_explain, "pneumonia", pixels)
    first_pid = pool.pids()[0]
    monkeypatch.setenv(ABORT_TAG_VARIABLE, "model:upload-a")
    with pytest.raises(WorkerStoppedError, match="stopped while working on this image"):
        pool.call(inference.classify_and_explain, "pneumonia", pixels, tag="upload-a")
    assert pool.pids()[0] != first_pid  # replaced
    prediction, _ = pool.call(inference.classify_and_explain, "pneumonia", pixels, tag="upload-b")
    assert prediction.label in ("NORMAL", "PNEUMONIA")


@pytest.mark.slow
def test_a_caller_waiting_while_another_request_crashes_never_notices(pool, monkeypatch):
    monkeypatch.setenv(ABORT_TAG_VARIABLE, "model:crash")
    pixels = np.random.default_rng(2).random((224, 224), dtype=np.float32)
    outcomes: dict[str, object] = {}

    def session(tag: str) -> None:
        try:
            outcomes[tag] = pool.call(inference.classify_and_explain, "pneumonia", pixels, tag=tag)[0].label
        except WorkerStoppedError as error:
            outcomes[tag] = error

    threads = [threading.Thread(target=session, args=(tag,)) for tag in ("crash", "fine-1", "fine-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert isinstance(outcomes["crash"], WorkerStoppedError)
    assert outcomes["fine-1"] in ("NORMAL", "PNEUMONIA") and outcomes["fine-2"] in ("NORMAL", "PNEUMONIA")


def test_typed_errors_travel_unchanged_and_untyped_ones_lose_their_message(pool):
    from core.errors import CorruptImageError
    from core.io.loading import load_image

    with pytest.raises(CorruptImageError):
        pool.call(load_image, b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "broken.png")
    with pytest.raises(WorkerFailedError) as caught:
        pool.call(raise_untyped)
    assert "KeyError" in str(caught.value) and "patient" not in str(caught.value)


def test_the_memory_limit_ends_a_runaway_allocation_not_the_caller():
    pool = WorkerPool("decoder", size=1, memory_limit_bytes=1024**3)
    try:
        with pytest.raises((WorkerFailedError, WorkerStoppedError)):
            pool.call(allocate, 2048)
        assert pool.call(allocate, 64) == 64 * 1024 * 1024
    finally:
        pool.close()


def test_a_request_that_overruns_its_time_is_stopped():
    pool = WorkerPool("decoder", size=1, timeout_s=1)
    try:
        with pytest.raises(WorkerStoppedError, match="longer than"):
            pool.call(sleep_for, 30)
        assert pool.call(sleep_for, 0) == 0
    finally:
        pool.close()


def test_nothing_is_written_to_disk_by_the_worker_mechanism(tmp_path, monkeypatch):
    """The child runs in the repository folder: the upload travels through a socket, and no file appears."""
    from tests.helpers import REPO, png_bytes, synthetic_chest

    before = {p for p in REPO.rglob("*") if ".git" not in p.parts and "__pycache__" not in p.parts}
    pool = WorkerPool("decoder", size=1)
    try:
        from core.io.loading import load_image

        image = pool.call(load_image, png_bytes(synthetic_chest()), "chest.png")
        assert image.frames.shape == (1, 224, 224)
        assert os.path.exists(f"/proc/{pool.pids()[0]}")
    finally:
        pool.close()
    after = {p for p in REPO.rglob("*") if ".git" not in p.parts and "__pycache__" not in p.parts}
    assert after - before == set()


def test_large_uploads_travel_out_of_band_and_arrive_as_bytes_like_the_original(pool):
    from core.io.loading import sniff_format

    big = b"\x89PNG\r\n\x1a\n" + bytes(300_000)
    assert pool.call(sniff_format, big) == "png"
    image = pool.call(load_bytes_back, big)
    assert image == big


def load_bytes_back(data) -> bytes:
    return bytes(data)


def test_a_request_the_child_cannot_unpickle_gets_a_typed_error_and_the_child_lives(pool):
    import __main__

    def local_function():  # not importable by the child
        return 1

    local_function.__module__, local_function.__qualname__ = "__main__", "no_such_function_here"
    __main__.no_such_function_here = local_function
    try:
        pid = pool.pids()[0]
        with pytest.raises(WorkerFailedError, match="not understood"):
            pool.call(local_function)
        assert pool.pids()[0] == pid
    finally:
        del __main__.no_such_function_here
