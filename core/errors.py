"""Typed errors raised by ScanSight's core, with messages meant for a clinician."""

from __future__ import annotations


class ScanSightError(Exception):
    """Base class: every error `core` raises on purpose derives from it."""

    #: One short sentence on what to do instead, shown under the message in the app.
    hint: str = "Upload a chest X-ray, a brain MRI slice or a CT slice as PNG, JPEG, TIFF or DICOM."


class EmptyFileError(ScanSightError):
    """The upload has no bytes."""


class UnsupportedFileError(ScanSightError):
    """The file is readable but is not a format (or DICOM encoding) ScanSight reads."""


class CorruptImageError(ScanSightError):
    """The file claims a supported format but cannot be decoded (truncated, damaged)."""

    hint = "Export the image again from your viewer, or upload another copy of it."


class ImageTooLargeError(ScanSightError):
    """The file or its pixel count exceeds ScanSight's limits."""

    hint = "Downscale the image (for example to 2,048 pixels on its longest side) and upload it again."


class ModelCardError(ScanSightError):
    """A model's JSON card is missing, invalid, or does not match the weights file."""

    hint = "Reinstall the weights/ folder from the repository."
