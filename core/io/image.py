"""The decoded image every loader returns (`LoadedImage`), the decoding limits, and helpers shared by the
raster and DICOM decoders."""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import UnidentifiedImageError

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


def decoder_message(error: Exception, limit: int = 120) -> str:
    """The decoder's own words, first line only, without object reprs ("<_io.BytesIO object at 0x7f…>": an address
    differs per run and means nothing to a reader), shortened at a word boundary with an ellipsis (never mid-word)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", text).strip() or type(error).__name__
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + " …"
