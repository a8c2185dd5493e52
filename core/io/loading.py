"""Decode an upload (bytes + file name) into a float image, in memory only.

Supported: PNG, JPEG, TIFF (first page unless asked) and DICOM (MONOCHROME1 inverted, modality and
VOI LUT / window applied, 16-bit data kept in float). The format is recognised from the bytes, not
the extension. Nothing is written to disk and nothing about the content is logged.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import (
    CorruptImageError,
    EmptyFileError,
    ImageTooLargeError,
    ScanSightError,
    UnsupportedFileError,
)
from core.io.image import (  # noqa: F401  (re-exported: the loading API in one place)
    DECODER_ERRORS,
    MAX_DECODED_VALUES,
    MAX_FILE_BYTES,
    MAX_FRAMES,
    MAX_PIXELS,
    MAX_TOTAL_PIXELS,
    MIN_SIDE,
    PATIENT_FIELDS,
    TECHNICAL_FIELDS,
    LoadedImage,
    MemoryReader,
    byte_stream,
    decoder_message,
    rescale_to_unit,
    to_grey,
)


def sniff_format(data: bytes) -> str:
    """Name the file format from its first bytes ('png', 'jpeg', 'tiff', 'dicom', or another name)."""
    head = data[:256]
    # DICM first: a DICOM preamble may itself hold a TIFF header (dual-format files).
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"%PDF"):
        return "pdf"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    # DICOM written without the 128-byte preamble starts with a (0008,xxxx) group tag.
    if head[:2] in (b"\x08\x00", b"\x02\x00") and len(data) > 64:
        return "dicom-raw"
    return "unknown"


def read_capped(path, limit: int = MAX_FILE_BYTES) -> bytes:
    """A file's bytes, for the CLIs: only regular files (a device such as /dev/zero, a FIFO or a socket is
    refused before it is opened), and never more than `limit` + 1 bytes read."""
    import os
    import stat

    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise UnsupportedFileError(
                "This is not a regular file (a device, a pipe or a folder); ScanSight reads files."
            )
        if info.st_size > limit:
            raise ImageTooLargeError(
                f"The file is {info.st_size / 1e6:.0f} MB; ScanSight reads files up to {limit / 1e6:.0f} MB."
            )
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as error:
        raise UnsupportedFileError(f"The file cannot be read ({error.strerror or type(error).__name__}).") from None
    if len(data) > limit:
        raise ImageTooLargeError(f"The file is over {limit / 1e6:.0f} MB; ScanSight reads files up to that size.")
    return data


def load_image(data: bytes, file_name: str = "", all_frames: bool = True) -> LoadedImage:
    """Decode `data` (the upload's bytes) into a `LoadedImage`. Raises a `ScanSightError` subclass."""
    file_name = file_name or ""
    if data is None or len(data) == 0:
        raise EmptyFileError("The file is empty (0 bytes).")
    if len(data) > MAX_FILE_BYTES:
        raise ImageTooLargeError(
            f"The file is {len(data) / 1e6:.0f} MB; ScanSight reads files up to {MAX_FILE_BYTES / 1e6:.0f} MB."
        )
    kind = sniff_format(data)
    if kind in ("png", "jpeg", "tiff"):
        image = _load_raster(data, kind, all_frames)
    elif kind in ("dicom", "dicom-raw") or (kind == "unknown" and file_name.lower().endswith((".dcm", ".dicom"))):
        from core.io.dicom import load_dicom

        try:
            image = load_dicom(data, all_frames=all_frames)
        except ScanSightError:
            raise
        except MemoryError:
            raise ImageTooLargeError("The DICOM image is too large to decode in the memory available.") from None
        except Exception as error:  # pydicom parses lazily: a damaged element can raise almost anything, anywhere
            raise CorruptImageError(
                "The DICOM file could not be read; it looks damaged "
                f"({type(error).__name__}: {decoder_message(error)})."
            ) from None
    elif kind == "unknown":
        raise UnsupportedFileError(
            "This file is not an image ScanSight can read: its content is not PNG, JPEG, TIFF or DICOM"
            + (f" (it is named '{file_name}')." if file_name else ".")
        )
    else:
        raise UnsupportedFileError(
            f"This file is a {kind.upper()} file; ScanSight reads PNG, JPEG, TIFF and DICOM images."
        )
    image.file_name = file_name
    if image.frames.ndim not in (3, 4) or min(image.frames.shape[1:3], default=0) < 1:
        raise CorruptImageError(  # e.g. a damaged TIFF whose page decodes to a line of samples, not an image
            f"The {kind.upper()} file could not be decoded into an image; it looks damaged."
        )
    _check_size(image.frames.shape[1], image.frames.shape[2])
    return image


def _check_size(height: int, width: int) -> None:
    if height * width > MAX_PIXELS:
        raise ImageTooLargeError(
            f"The image is {width} x {height} pixels ({height * width / 1e6:.0f} megapixels); "
            f"ScanSight reads images up to {MAX_PIXELS / 1e6:.0f} megapixels."
        )
    if min(height, width) < MIN_SIDE:
        raise UnsupportedFileError(
            f"The image is only {width} x {height} pixels: too small to be a scan "
            f"(at least {MIN_SIDE} pixels per side are needed)."
        )


def _load_raster(data: bytes, kind: str, all_frames: bool) -> LoadedImage:
    """PNG, JPEG or TIFF: every page's size is read from the headers and checked before any pixel is
    decoded; only the pages that are used (those of the first page's size) are decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                pil = Image.open(byte_stream(data))
            except UnidentifiedImageError:
                if kind != "tiff":
                    raise
                return _load_tiff_with_tifffile(data, all_frames)  # float, half-float or many-channel TIFF
            headers = []
            for index in range(min(getattr(pil, "n_frames", 1), MAX_FRAMES if all_frames else 1)):
                pil.seek(index)  # reads the page's header only
                width, height = pil.size
                headers.append(((height, width), pil.mode not in GREY_MODES))
            used = plan_pages(headers)
            pages = []
            for index in used:
                pil.seek(index)
                pages.append(_pil_to_float(pil))
    except (ImageTooLargeError, UnsupportedFileError):
        raise
    except MemoryError:
        raise ImageTooLargeError("The image is too large to decode in the memory available.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(
            f"The image is too large: its header declares far more pixels than ScanSight reads "
            f"({MAX_PIXELS / 1e6:.0f} megapixels at most)."
        ) from None
    except Exception as error:  # any other decoder failure on damaged bytes: Pillow raises many kinds
        raise CorruptImageError(
            f"The {kind.upper()} file could not be decoded; it looks damaged or truncated ({decoder_message(error)})."
        ) from None
    return LoadedImage(frames=np.stack(pages), source_format=kind)


#: PIL modes that decode to one value per pixel.
GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "LA", "La")


def plan_pages(headers: list[tuple[tuple[int, int], bool]]) -> list[int]:
    """Which pages to decode, from their header sizes alone: (height, width), colour? per page. The first page
    decides the size (pages of another size are skipped, never decoded); raises when the first page or the
    pages used would decode to more than the limits allow."""
    if not headers:
        raise CorruptImageError("The file holds no image page.")
    (height, width), _ = headers[0]
    _check_size(height, width)
    used, values = [], 0
    for index, (size, colour) in enumerate(headers):
        if size != (height, width):
            continue
        values += height * width * (3 if colour else 1)
        if values > MAX_DECODED_VALUES:
            raise ImageTooLargeError(
                f"The file's images would take {values / 1e6:.0f}+ million values once decoded"
                f"{f' ({len(headers)} pages of {width} x {height})' if len(headers) > 1 else ''}; ScanSight decodes "
                f"up to {MAX_DECODED_VALUES / 1e6:.0f} million ({MAX_DECODED_VALUES * 4 / 2**20:.0f} MB)."
            )
        used.append(index)
    return used


def _load_tiff_with_tifffile(data: bytes, all_frames: bool) -> LoadedImage:
    """TIFFs that Pillow does not read: 16/32/64-bit float samples, more than 4 channels. Headers first, as above."""
    import tifffile

    try:
        tiff = tifffile.TiffFile(byte_stream(data))
        pages = list(tiff.pages[: MAX_FRAMES if all_frames else 1])
        headers = []
        for page in pages:
            height, width, channels = _tiff_geometry(page)
            headers.append(((height, width), channels >= 3))
        used = plan_pages(headers)
        frames = [_tiff_page_to_float(pages[index]) for index in used]
    except (ImageTooLargeError, UnsupportedFileError, CorruptImageError):
        raise
    except MemoryError:
        raise ImageTooLargeError("The image is too large to decode in the memory available.") from None
    except Exception as error:
        message = f"The TIFF file could not be decoded; it looks damaged ({decoder_message(error)})."
        raise CorruptImageError(message) from None
    return LoadedImage(frames=np.stack(frames), source_format="tiff")


def _tiff_geometry(page) -> tuple[int, int, int]:
    """(height, width, channels) of a tifffile page, from its header."""
    axes, shape = page.axes, page.shape
    if "Y" not in axes or "X" not in axes:
        raise UnsupportedFileError(f"This TIFF page has no image axes (it is laid out as '{axes}').")
    height, width = shape[axes.index("Y")], shape[axes.index("X")]
    channels = shape[axes.index("S")] if "S" in axes else 1
    if np.dtype(page.dtype).kind not in "uif":
        raise UnsupportedFileError(f"This TIFF stores {page.dtype} samples; ScanSight reads integer or float images.")
    return int(height), int(width), int(channels)


def _tiff_page_to_float(page) -> np.ndarray:
    array = np.asarray(page.asarray())
    axes = page.axes
    if "S" in axes:
        array = np.moveaxis(array, axes.index("S"), -1)
        array = array[..., :3] if array.shape[-1] >= 3 else array[..., 0]
    array = array.reshape(array.shape[-3:] if array.ndim >= 3 and array.shape[-1] == 3 else array.shape[-2:])
    return rescale_to_unit(array)


def _pil_to_float(page: Image.Image) -> np.ndarray:
    """One PIL image -> (H, W) or (H, W, 3) float32 in [0, 1]; colour collapsed to grey when it is grey.
    Lean on memory: 8-bit colour is checked for greyness before it becomes float."""
    mode = page.mode
    if mode in ("L", "1"):
        array = np.asarray(page.convert("L"), dtype=np.float32)
        array /= 255.0
        return array
    if mode in ("P", "PA", "LA", "La", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        rgb = np.asarray(page if mode == "RGB" else page.convert("RGB"))  # converting RGB to RGB is a copy
        if _is_grey(rgb):
            grey = _channel_mean(rgb)
            grey /= 255.0
            return grey
        array = rgb.astype(np.float32)
        array /= 255.0
        return array
    # 16/32-bit integer and float modes ("I;16", "I", "F"): keep the full range in float.
    array = np.asarray(page)
    if array.ndim == 3:
        array = array[..., :3].mean(axis=-1, dtype=np.float32)
    return rescale_to_unit(array)


def _channel_mean(rgb: np.ndarray) -> np.ndarray:
    """`rgb.mean(axis=-1, dtype=float32)` for (H, W, 3) uint8, bit for bit, about 10x faster: numpy's reduction over
    a length-3 last axis is slow, three whole-plane additions are not."""
    grey = rgb[..., 0].astype(np.float32)
    grey += rgb[..., 1]
    grey += rgb[..., 2]
    grey /= 3.0
    return grey


def _is_grey(rgb: np.ndarray, tolerance: float = 4 / 255) -> bool:
    """True when the three channels are (nearly) equal, as in a grey X-ray saved as RGB JPEG (uint8 or float)."""
    sample = rgb[::4, ::4].astype(np.float32)
    if rgb.dtype == np.uint8:
        sample /= 255.0
    return bool(np.abs(sample - sample.mean(axis=-1, keepdims=True)).max() <= tolerance)
