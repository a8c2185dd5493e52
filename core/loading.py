"""Decode an upload (bytes + file name) into a float image, in memory only.

Supported: PNG, JPEG, TIFF (first page unless asked) and DICOM (MONOCHROME1 inverted, modality and
VOI LUT / window applied, 16-bit data kept in float). The format is recognised from the bytes, not
the extension. Nothing is written to disk and nothing about the content is logged.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

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
MAX_PIXELS = 50_000_000  # per frame; a 7,000 x 7,000 scan still loads
MAX_TOTAL_PIXELS = 200_000_000  # all frames together
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
    "WindowCenter",
    "WindowWidth",
    "Manufacturer",
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            pil = Image.open(io.BytesIO(data))
            width, height = pil.size
            _check_size(height, width)
            pages, total = [], 0
            for index, page in enumerate(ImageSequence.Iterator(pil)):
                if index >= (MAX_FRAMES if all_frames else 1):
                    break
                width, height = page.size  # every page is checked before it is decoded, not just the first
                _check_size(height, width)
                total += width * height
                if total > MAX_TOTAL_PIXELS:
                    raise ImageTooLargeError(
                        f"The file's pages hold more than {MAX_TOTAL_PIXELS / 1e6:.0f} megapixels in all."
                    )
                pages.append(_pil_to_float(page))
    except (ImageTooLargeError, UnsupportedFileError):
        raise
    except MemoryError:
        raise ImageTooLargeError("The image is too large to decode in the memory available.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLargeError(f"The image is too large to decode safely ({error}).") from None
    except Exception as error:  # any other decoder failure on damaged bytes: Pillow raises many kinds
        raise CorruptImageError(
            f"The {kind.upper()} file could not be decoded; it looks damaged or truncated ({_short(error)})."
        ) from None
    shapes = {page.shape for page in pages}
    if len(shapes) > 1:
        pages = pages[:1]  # pages of different sizes: keep the first
    return LoadedImage(frames=np.stack(pages), source_format=kind)


def _pil_to_float(page: Image.Image) -> np.ndarray:
    """One PIL image -> (H, W) or (H, W, 3) float32 in [0, 1]; colour collapsed to grey when it is grey."""
    mode = page.mode
    if mode in ("1", "L", "P", "LA", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        if mode in ("L", "1"):
            array = np.asarray(page.convert("L"), dtype=np.float32) / 255.0
        else:
            rgb = page.convert("RGB")
            array = np.asarray(rgb, dtype=np.float32) / 255.0
            if _is_grey(array):
                array = array.mean(axis=-1)
        return array.astype(np.float32)
    # 16/32-bit integer and float modes ("I;16", "I", "F"): keep the full range in float.
    array = np.asarray(page).astype(np.float32)
    if array.ndim == 3:
        array = array[..., :3].mean(axis=-1)
    return rescale_to_unit(array)


def _is_grey(rgb: np.ndarray, tolerance: float = 4 / 255) -> bool:
    """True when the three channels are (nearly) equal, as in a grey X-ray saved as RGB JPEG."""
    sample = rgb[::4, ::4]
    return bool(np.abs(sample - sample.mean(axis=-1, keepdims=True)).max() <= tolerance)


def rescale_to_unit(array: np.ndarray) -> np.ndarray:
    """Min-max rescale to [0, 1] in float32; a constant image becomes zeros."""
    array = array.astype(np.float32)
    finite = np.isfinite(array)
    if not finite.any():
        return np.zeros_like(array, dtype=np.float32)
    low, high = float(array[finite].min()), float(array[finite].max())
    if high <= low:
        return np.zeros_like(array, dtype=np.float32)
    unit = np.clip((array - low) / (high - low), 0, 1)  # +-inf pixels clip to the ends, NaN becomes 0
    return np.nan_to_num(unit, nan=0.0).astype(np.float32)


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:120]
