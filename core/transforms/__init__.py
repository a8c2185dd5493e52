"""Preprocessing steps (small named, composable, as MONAI's transforms), the random training-time transforms, and the
CT lung geometry."""
