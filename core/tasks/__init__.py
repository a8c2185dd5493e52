"""What the app and the CLIs ask: the table of tasks (`registry`), the gate and header screening, segmentation and the
MRI study, batch rows, and the model calls the pages make (`inference`)."""
