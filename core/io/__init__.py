"""Bytes in and out: decoding uploads (PNG, JPEG, TIFF, DICOM) into `LoadedImage`, bounded zip reading, PDF reports,
demo samples, identifier-like names. Nothing here knows a model."""
