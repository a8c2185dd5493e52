"""Decode an upload (bytes + file name) into a float image, in memory only.

Supported: PNG, JPEG, TIFF (first page unless asked) and DICOM (MONOCHROME1 inverted, modality and
VOI LUT / window applied, 16-bit data kept in float). The format is recognised from the bytes, not
the extension. Nothing is written to disk and nothing about the content is logged.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import (
    CorruptImageError,
    EmptyFileError,
    ImageTooLargeError,
    ScanSightError,
    UnsupportedFileError,
)

#: What decoders raise on damaged input (Pillow's TIFF reader alone raises most of these).
DECODER_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    ZeroDivisionError,
    RuntimeError,
    struct.error,
    zlib.error,
)

MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_PIXELS = 50_000_000  # per frame; a 7,000 x 7,000 grey scan still loads
#: Values decoded from one file, all frames and channels together (float32: 256 MB). Checked from the headers
#: before anything is decoded, so one upload's decoding stays far below 1.5 GB.
MAX_DECODED_VALUES = 64 * 1024 * 1024
MAX_TOTAL_PIXELS = MAX_DECODED_VALUES  # kept for callers that speak in pixels
MAX_FRAMES = 512
MIN_SIDE = 16

#: DICOM attributes that identify a patient: never shown unless asked, never logged.
PATIENT_FIELDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "OtherPatientIDs",
    "InstitutionName",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyDate",
)
#: DICOM attributes that are safe and useful to show.
TECHNICAL_FIELDS = (
    "Modality",
    "BodyPartExamined",
    "ViewPosition",
    "PhotometricInterpretation",
    "BitsStored",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "PixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "SliceLocation",
    "InstanceNumber",
    "WindowCenter",
    "WindowWidth",
    "Manufacturer",
    "StudyDescription",
    "SeriesDescription",
)


@dataclass
class LoadedImage:
    """A decoded upload. `frames` is (F, H, W) grey or (F, H, W, 3) colour, float32 in [0, 1]."""

    frames: np.ndarray
    source_format: str
    file_name: str = ""
    modality: str | None = None
    body_part: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    bits_stored: int | None = None
    technical: dict[str, str] = field(default_factory=dict)
    patient: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def is_colour(self) -> bool:
        return self.frames.ndim == 4

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def frame(self, index: int = 0) -> np.ndarray:
        """One frame, (H, W) or (H, W, 3) float32 in [0, 1]."""
        return self.frames[int(np.clip(index, 0, self.n_frames - 1))]

    def grey(self, index: int = 0) -> np.ndarray:
        """One frame as a single grey channel."""
        return to_grey(self.frame(index))


class MemoryReader(io.RawIOBase):
    """A read-only, seekable file over a buffer (bytes, bytearray or memoryview), without copying it
    (`io.BytesIO` copies anything but `bytes`)."""

    def __init__(self, data):
        super().__init__()
        self._view = memoryview(data).cast("B")
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._view[self._position : self._position + len(buffer)]
        memoryview(buffer).cast("B")[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position


def byte_stream(data) -> MemoryReader | io.BytesIO:
    """A file object over the upload's bytes that shares their memory (full reads: never short before the end)."""
    return io.BytesIO(data) if isinstance(data, bytes) else MemoryReader(data)


def to_grey(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) float image -> (H, W) float32."""
    if image.ndim == 2:
        return image.astype(np.float32, copy=False)
    return image[..., :3].mean(axis=-1).astype(np.float32)


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
        from core.dicom import load_dicom

        try:
            image = load_dicom(data, all_frames=all_frames)
        except ScanSightError:
            raise
        except MemoryError:
            raise ImageTooLargeError("The DICOM image is too large to decode in the memory available.") from None
        except Exception as error:  # pydicom parses lazily: a damaged element can raise almost anything, anywhere
            raise CorruptImageError(
                f"The DICOM file could not be read; it looks damaged ({type(error).__name__}: {_short(error)})."
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
            f"The {kind.upper()} file could not be decoded; it looks damaged or truncated ({_short(error)})."
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
        raise CorruptImageError(f"The TIFF file could not be decoded; it looks damaged ({_short(error)}).") from None
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
        rgb = np.asarray(page.convert("RGB"))
        if _is_grey(rgb):
            grey = rgb.mean(axis=-1, dtype=np.float32)
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


def _is_grey(rgb: np.ndarray, tolerance: float = 4 / 255) -> bool:
    """True when the three channels are (nearly) equal, as in a grey X-ray saved as RGB JPEG (uint8 or float)."""
    sample = rgb[::4, ::4].astype(np.float32)
    if rgb.dtype == np.uint8:
        sample /= 255.0
    return bool(np.abs(sample - sample.mean(axis=-1, keepdims=True)).max() <= tolerance)


def rescale_to_unit(array: np.ndarray) -> np.ndarray:
    """Min-max rescale to [0, 1] in float32 (one float32 copy, then in place); a constant image becomes zeros."""
    unit = np.array(array, dtype=np.float32)  # float64 input: its range is taken after the cast, like the values
    finite = np.isfinite(unit)
    if not finite.any():
        return np.zeros_like(unit)
    everywhere = bool(finite.all())
    low = float(unit.min() if everywhere else unit.min(where=finite, initial=np.inf))
    high = float(unit.max() if everywhere else unit.max(where=finite, initial=-np.inf))
    del finite
    if high <= low:
        return np.zeros_like(unit)
    unit -= low
    unit /= high - low
    np.clip(unit, 0, 1, out=unit)  # +-inf pixels clip to the ends, NaN becomes 0
    return np.nan_to_num(unit, copy=False, nan=0.0)


def _short(error: Exception, limit: int = 120) -> str:
    """The decoder's own words, first line only, without object reprs ("<_io.BytesIO object at 0x7f…>": an address
    differs per run and means nothing to a reader), shortened at a word boundary with an ellipsis (never mid-word)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", text).strip() or type(error).__name__
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + " …"
