"""`LiteForward`: a TensorFlow Lite copy of a Keras network for forward passes only (the batch paths).

On the 2-core CPU the Lite interpreter with its XNNPACK kernels ran the pneumonia network about 3x faster than
TensorFlow's own graph (``python -m core.bench``: "batch"), with logits equal to 1e-4. Grad-CAM needs gradients,
so the pages keep the Keras network; the batch CLIs (`core.cli.predict`, `core.cli.archive`) ask for this engine.
The conversion happens in memory when the model is loaded (a few seconds); nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings

import numpy as np


class LiteConversionError(RuntimeError):
    """The network could not be converted; the caller keeps TensorFlow's forward pass."""


class LiteForward:
    """`forward(batch)` -> the network's output for a float32 batch (N, H, W, C), through TensorFlow Lite."""

    def __init__(self, keras_model, threads: int | None = None) -> None:
        import tensorflow as tf

        try:  # Keras exports a temporary SavedModel of the network on the way and prints its signature
            with contextlib.redirect_stdout(io.StringIO()):
                blob = tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()
        except Exception as error:  # the converter raises many kinds
            raise LiteConversionError(f"TensorFlow Lite could not convert {keras_model.name}: {error}") from None
        with warnings.catch_warnings():  # tf.lite.Interpreter announces its move to the ai-edge-litert package
            warnings.simplefilter("ignore")
            self._interpreter = tf.lite.Interpreter(model_content=blob, num_threads=threads or os.cpu_count() or 1)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._shape: tuple[int, ...] | None = None
        self._lock = threading.Lock()  # one interpreter: one call at a time

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            if batch.shape != self._shape:
                self._interpreter.resize_tensor_input(self._input, list(batch.shape))
                self._interpreter.allocate_tensors()
                self._shape = batch.shape
            self._interpreter.set_tensor(self._input, batch)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output).copy()
