"""TensorFlow's runtime settings, in one place.

`core/__init__.py` imports this module, so every entry point that touches `core` (the app and its pages,
every ``python -m core.*`` CLI, the tests through ``tests/conftest.py``) has these environment variables set
before TensorFlow is first imported; the Dockerfile sets the same values with ``ENV``.

Why: TensorFlow 2.21's oneDNN kernels corrupt the heap on AVX-512 CPUs when they compute the filter gradient of
a strided 1x1 convolution (Grad-CAM of the ResUNet's ``enc1_skip`` layer, MRI and CT training): the process dies
with ``double free or corruption`` or a segfault. Capping oneDNN at AVX2 is not enough (its AVX2 kernels crash
on other shapes, e.g. 4 -> 8 channels at 64 px); oneDNN off (TensorFlow's own Eigen kernels) survives every
check and was also the fastest safe option here: ``python -m core.cli.runtime_bench`` measured it side by side
(README: "TensorFlow runtime"; ``weights/runtime.json``).

Every value is a default: a variable already set in the environment wins (``TF_ENABLE_ONEDNN_OPTS=1`` turns
oneDNN back on, at the risk above on AVX-512 CPUs).
"""

from __future__ import annotations

import os

#: The settings every ScanSight process starts with (unless the environment already says otherwise).
TF_RUNTIME_DEFAULTS: dict[str, str] = {
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}

#: The variable that decides whether the crash can happen, and the options the benchmark compares.
CRASH_SETTING = "TF_ENABLE_ONEDNN_OPTS"
RUNTIME_OPTIONS: dict[str, dict[str, str]] = {
    "oneDNN, full ISA (TensorFlow's default)": {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "ALL"},
    "oneDNN off": {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "ALL"},
    "oneDNN capped at AVX2": {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "oneDNN capped at AVX2_VNNI": {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2_VNNI"},
    "oneDNN capped at AVX": {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX"},
    "oneDNN capped at SSE4.1": {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def apply(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set the defaults that the environment does not already set; return the settings in effect."""
    environ = os.environ if environ is None else environ
    for name, value in TF_RUNTIME_DEFAULTS.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in TF_RUNTIME_DEFAULTS if name in environ}


def in_effect() -> dict[str, str]:
    """The runtime settings this process runs with (for cards, benchmarks and the About text)."""
    return {name: os.environ.get(name, "") for name in TF_RUNTIME_DEFAULTS}


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def has_avx512() -> bool:
    return "avx512f" in cpu_flags()


#: The exact repro from issue 11 first, then the shapes ScanSight's ResUNets train with (small test networks
#: included): oneDNN's AVX2 kernels also corrupt the heap on some of these (4 -> 8 channels at 64 px, batch 4).
REPRO_SHAPES: tuple[tuple[int, int, int, int], ...] = (
    (1, 128, 8, 16),
    *((batch, size, width, 2 * width) for batch in (1, 4, 8) for size in (32, 64, 128) for width in (4, 8, 16)),
)


def onednn_repro(repeats: int = 10, shapes: tuple[tuple[int, int, int, int], ...] = REPRO_SHAPES) -> float:
    """The crash, isolated: the filter gradient of a strided 1x1 convolution under `tf.GradientTape` (first the
    issue's 1x128x128x8 -> 16 channels, stride 2, VALID and SAME; then every (batch, size, channels in, out) of
    `shapes`). Kills the process on AVX-512 CPUs under oneDNN's AVX-512 or AVX2 kernels; returns a checksum
    otherwise."""
    import tensorflow as tf

    total = 0.0
    for batch, size, channels_in, channels_out in shapes:
        inputs = tf.random.stateless_normal((batch, size, size, channels_in), seed=(1, 2))
        kernel = tf.Variable(tf.random.stateless_normal((1, 1, channels_in, channels_out), seed=(3, 4)))
        for padding in ("VALID", "SAME"):
            for _ in range(repeats):
                with tf.GradientTape() as tape:
                    outputs = tf.nn.conv2d(inputs, kernel, strides=2, padding=padding)
                    loss = tf.reduce_sum(outputs * outputs)
                total += float(tf.reduce_sum(tape.gradient(loss, kernel)))
    return total


apply()

if __name__ == "__main__":
    # ``python -m core.runtime``: run the repro under the settings in effect (exit 0 = survived).
    print(f"{cpu_model()}; AVX-512: {has_avx512()}; settings: {in_effect()}")
    print(f"repro survived, checksum {onednn_repro():.3f}")
