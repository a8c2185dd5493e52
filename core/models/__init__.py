"""Networks and the objects that carry them: model cards, `ScanModel`, the network builders (CNN, ResUNet,
EfficientNet-Lite0 and its U-Net), the per-process model cache and the worker process that runs model calls."""
