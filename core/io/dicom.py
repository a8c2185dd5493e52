"""DICOM decoding through pydicom: modality LUT, VOI LUT or window, MONOCHROME1 inversion, frames."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
from pydicom.multival import MultiValue

from core.errors import CorruptImageError, ImageTooLargeError, UnsupportedFileError
from core.io.image import (
    DECODER_ERRORS,
    MAX_DECODED_VALUES,
    MAX_FRAMES,
    MAX_PIXELS,
    PATIENT_FIELDS,
    TECHNICAL_FIELDS,
    LoadedImage,
    byte_stream,
    decoder_message,
    rescale_to_unit,
)

DEFLATED_SYNTAX = b"1.2.840.10008.1.2.1.99"


def load_dicom(data: bytes, all_frames: bool = True, window: tuple[float, float] | None = None) -> LoadedImage:
    """Decode DICOM bytes. `window` = (centre, width) overrides the file's own window."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if DEFLATED_SYNTAX in data[:4096]:
        raise UnsupportedFileError(
            "This DICOM file uses the Deflated transfer syntax, which ScanSight does not read (it can hide a very "
            "large image in a small file). Export it uncompressed or with JPEG 2000 and upload it again."
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if data[:4] == b"DICM":  # written without its 128-byte preamble
                data = bytes(128) + data
            # Elements over 1 MB (the pixel data) are read only when used, after the size checks below.
            dataset = pydicom.dcmread(byte_stream(data), force=True, defer_size="1 MB")
    except (InvalidDicomError, *DECODER_ERRORS) as error:
        raise CorruptImageError(f"The DICOM file could not be read; it looks damaged or truncated ({error}).") from None
    truncated = any("end of file" in str(warning.message).lower() for warning in caught)
    has_meta = bool(getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None))
    if "PixelData" not in dataset and "FloatPixelData" not in dataset:
        if truncated:
            raise CorruptImageError("The DICOM file ends early (it is truncated): its image is missing.")
        if not has_meta and not hasattr(dataset, "SOPClassUID") and not hasattr(dataset, "Modality"):
            raise UnsupportedFileError("This file is neither an image nor a DICOM file ScanSight can read.")
        raise CorruptImageError(
            "This DICOM file holds no image (it has no pixel data): it may be a report or a series index."
        )

    try:
        rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
        n_frames = max(1, int(dataset.get("NumberOfFrames", 1) or 1))
        samples = max(1, int(dataset.get("SamplesPerPixel", 1) or 1))
    except DECODER_ERRORS as error:
        raise CorruptImageError(f"The DICOM header has invalid image dimensions ({error}).") from None
    used_frames = n_frames if all_frames else 1
    if rows * columns * used_frames * samples > MAX_DECODED_VALUES:
        raise ImageTooLargeError(
            f"The DICOM file holds {n_frames} frame(s) of {columns} x {rows} pixels ({samples} sample(s) each): "
            f"more than ScanSight decodes ({MAX_DECODED_VALUES / 1e6:.0f} million values in all)."
        )
    if rows * columns > MAX_PIXELS:
        raise ImageTooLargeError(
            f"The DICOM image is {columns} x {rows} pixels; ScanSight reads images up to "
            f"{MAX_PIXELS / 1e6:.0f} megapixels."
        )
    if n_frames > MAX_FRAMES:
        raise ImageTooLargeError(f"The DICOM file has {n_frames} frames; ScanSight reads up to {MAX_FRAMES}.")

    photometric = str(dataset.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR" and "RedPaletteColorLookupTableDescriptor" not in dataset:
        raise CorruptImageError(
            "This DICOM image is PALETTE COLOR but its colour table (the palette lookup tables) is missing, "
            "so its colours cannot be known."
        )
    pixels = _decode_pixels(dataset, used_frames)
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            pixels = apply_color_lut(pixels, dataset)
        except DECODER_ERRORS as error:
            raise CorruptImageError(f"The DICOM palette colour table could not be applied ({error}).") from None
        dataset.SamplesPerPixel = 3
    try:
        frames = _to_frames(dataset, pixels, n_frames, all_frames, window)
    except DECODER_ERRORS as error:
        raise CorruptImageError(f"The DICOM image values could not be interpreted ({error}).") from None
    if not np.isfinite(frames).all():
        frames = np.nan_to_num(frames, nan=0.0, posinf=1.0, neginf=0.0)

    return LoadedImage(
        frames=frames.astype(np.float32),
        source_format="dicom",
        modality=_text(dataset, "Modality"),
        body_part=_text(dataset, "BodyPartExamined"),
        pixel_spacing_mm=_pixel_spacing(dataset),
        bits_stored=_int(dataset, "BitsStored"),
        technical=_technical(dataset),
        patient={name: _text(dataset, name) for name in PATIENT_FIELDS if _text(dataset, name)},
    )


def _to_frames(dataset, pixels: np.ndarray, n_frames: int, all_frames: bool, window) -> np.ndarray:
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if samples == 1:
        if n_frames == 1 and pixels.ndim == 2:
            pixels = pixels[np.newaxis]
        if not all_frames:
            pixels = pixels[:1]
        out = np.empty(pixels.shape[:3], dtype=np.float32)  # filled frame by frame: no second full copy
        for index, frame in enumerate(pixels):
            out[index] = _grey_frame(dataset, frame, index, window)
        return out
    else:
        if n_frames == 1 and pixels.ndim == 3:
            pixels = pixels[np.newaxis]
        if not all_frames:
            pixels = pixels[:1]
        return rescale_to_unit(pixels.astype(np.float32))


def _decode_pixels(dataset, used_frames: int) -> np.ndarray:
    """The pixel data: only the first frame when only that one is used."""
    from pydicom.pixels import pixel_array

    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    syntax_name = getattr(syntax, "name", str(syntax or "unknown"))
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    try:
        if used_frames == 1 and frames > 1:
            return np.asarray(pixel_array(dataset, index=0))[np.newaxis]
        return np.asarray(dataset.pixel_array)
    except NotImplementedError:
        raise UnsupportedFileError(
            f"This DICOM file is compressed as '{syntax_name}', which ScanSight cannot decode. "
            "Export it uncompressed (Explicit VR Little Endian) and upload it again."
        ) from None
    except DECODER_ERRORS as error:
        message = decoder_message(error, 160)
        if not _decoder_available(syntax):
            raise UnsupportedFileError(
                f"This DICOM file is compressed as '{syntax_name}' and no installed decoder reads it."
            ) from None
        raise CorruptImageError(
            f"The DICOM pixel data could not be decoded; the file looks damaged or truncated ({message})."
        ) from None


def _decoder_available(syntax) -> bool:
    """Whether an installed plugin decodes this transfer syntax (else damaged data is not 'unsupported')."""
    from pydicom.pixels import get_decoder

    try:
        return bool(syntax) and bool(get_decoder(syntax).is_available)
    except (NotImplementedError, ValueError, KeyError, TypeError):
        return False


def _grey_frame(dataset, frame: np.ndarray, index: int, window: tuple[float, float] | None) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(frame, dataset).astype(np.float32)
    if window is not None:
        centre, width = window
        unit = np.clip((values - (centre - width / 2)) / max(width, 1e-6), 0, 1)
    elif (file_window := _file_window(dataset)) is not None:
        centre, width = file_window
        unit = np.clip((values - (centre - width / 2)) / max(width, 1e-6), 0, 1)
    elif "VOILUTSequence" in dataset:
        try:
            lut = dataset.VOILUTSequence[0]
            bits = int(lut.LUTDescriptor[2])
            unit = np.clip(np.asarray(apply_voi_lut(values, dataset, index=0), np.float32) / (2**bits - 1), 0, 1)
        except (*DECODER_ERRORS, ArithmeticError):
            unit = _robust_unit(values)
    else:
        unit = _robust_unit(values)
    if str(dataset.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        unit = 1.0 - unit
    return unit.astype(np.float32)


def _file_window(dataset) -> tuple[float, float] | None:
    """The file's first window (centre, width), after the modality LUT; None when absent or invalid."""
    try:
        centre, width = dataset.get("WindowCenter", None), dataset.get("WindowWidth", None)
        if centre is None or width is None:
            return None
        centre = float(centre[0] if isinstance(centre, MultiValue | list | tuple) else centre)
        width = float(width[0] if isinstance(width, MultiValue | list | tuple) else width)
    except (*DECODER_ERRORS, IndexError):
        return None
    return (centre, width) if width > 0 and np.isfinite(centre) and np.isfinite(width) else None


def _robust_unit(values: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1] between the 0.1st and 99.9th percentiles (ignores a few hot pixels)."""
    low, high = np.percentile(values, [0.1, 99.9])
    if high <= low:
        return rescale_to_unit(values)
    return np.clip((values - low) / (high - low), 0, 1).astype(np.float32)


def _technical(dataset) -> dict[str, str]:
    """The header fields worth showing, as a reader would write them ("0.143 x 0.143 mm", not "0.143\\0.143")."""
    fields = {name: _text(dataset, name) for name in TECHNICAL_FIELDS if _text(dataset, name)}
    spacing = _pixel_spacing(dataset)
    if spacing and "PixelSpacing" in fields:
        fields["PixelSpacing"] = f"{spacing[0]:.6g} x {spacing[1]:.6g} mm (row x column)"
    elif "PixelSpacing" in fields:
        fields["PixelSpacing"] += " (not a valid spacing: areas stay in pixels)"
    for name in ("WindowCenter", "WindowWidth"):
        if name in fields:
            with contextlib.suppress(ValueError):
                fields[name] = ", ".join(f"{float(part):.6g}" for part in fields[name].split("\\"))
    return fields


def _int(dataset, name: str) -> int | None:
    try:
        return int(dataset.get(name, 0) or 0) or None
    except DECODER_ERRORS:
        return None


def _text(dataset, name: str) -> str:
    """A header value as text; '' when it is missing or unreadable."""
    try:
        value = dataset.get(name, None)
    except DECODER_ERRORS:
        return ""
    if value is None:
        return ""
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(str(item) for item in value)
    return str(value).strip()


def _pixel_spacing(dataset) -> tuple[float, float] | None:
    for name in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            value = dataset.get(name, None)
        except DECODER_ERRORS:
            continue
        if value is not None and hasattr(value, "__len__") and len(value) == 2:
            try:
                row, column = float(value[0]), float(value[1])
            except (TypeError, ValueError):
                continue
            if row > 0 and column > 0:
                return row, column
    return None
