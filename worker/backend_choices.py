"""Which inference engines the ``backend`` setting accepts, and why the others were rejected.

Kept free of torch so that settings validate (and ``config`` prints) without loading it.
"""

from __future__ import annotations

#: Engines that can be selected with the ``backend`` setting.
SUPPORTED = ("torch",)
#: Engines that were measured and rejected, with the reason the error gives.
REJECTED = {
    "torch-int8": "dynamic int8 quantisation changed 3.1% of labels on held-out labelled "
    "sentences (99.5% agreement with fp32 is required), and torch.ao.quantization is deprecated",
    "onnx": "ONNX Runtime fp32 ran at 0.88x eager fp32 and 0.3x the bf16 default on the "
    "reference CPU: no gain for two more dependencies",
    "onnx-int8": "ONNX Runtime int8 changed 1.25% of labels on held-out labelled sentences "
    "(99.5% agreement with fp32 is required)",
}


def backend_problem(backend: str) -> str | None:
    """Why ``backend`` cannot be selected, or ``None`` when it can."""
    if backend in REJECTED:
        return f"backend {backend!r} is not supported: {REJECTED[backend]}; use one of " + (
            ", ".join(SUPPORTED)
        )
    if backend not in SUPPORTED:
        return f"unknown backend {backend!r}; use one of {', '.join(SUPPORTED)}"
    return None
