"""How much memory a model needs, by parameter count and quantization.

weights = parameters × bits per weight / 8
KV cache = 2 (K and V) × layers × KV heads × head size × context × bytes per element
total ≈ (weights + KV cache) × 1.10 (runtime buffers, activations, CUDA/Metal context)

When the architecture is unknown, the quick estimate is weights × 1.10 (a short
context's KV cache fits in the margin). Bits per weight of the k-quants are the table for Llama 2
7B in llama.cpp's tools/quantize/README.md (Q2_K 3.35, Q3_K_M 3.91, Q4_K_S 4.58,
Q4_K_M 4.84, Q5_K_M 5.68, Q6_K 6.56); Q4_0 and Q8_0 follow from their block
layout (18 and 34 bytes per 32 weights: 4.5 and 8.5); F16/BF16 are 16. The KV cache and
context length belong to the fuller estimate of model lifecycle work; here the
overhead covers a short context, which is what "will it load at all" needs.
"""

from __future__ import annotations

import re

BITS_PER_WEIGHT = {"Q2_K": 3.35, "Q3_K_M": 3.91, "Q4_0": 4.5, "Q4_K_S": 4.58,
                   "Q4_K_M": 4.84, "Q5_K_M": 5.68, "Q6_K": 6.56, "Q8_0": 8.5, "F16": 16.0,
                   "BF16": 16.0, "F32": 32.0}
OVERHEAD = 1.10
SUGGESTED = ("Q8_0", "Q5_K_M", "Q4_K_M")  # best quality first


def parameters(parameter_size: str) -> float | None:
    """'7.6B' → 7.6e9, '494.03M' → 4.94e8; None when the engine did not say."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMBT])?\s*", parameter_size or "", re.I)
    if not match:
        return None
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}.get((match.group(2) or "").upper(), 1)
    return float(match.group(1)) * scale


def estimate_bytes(params: float, quantization: str) -> float | None:
    bits = BITS_PER_WEIGHT.get((quantization or "").upper())
    return None if bits is None else params * bits / 8 * OVERHEAD


def best_fit(params: float, free_bytes: float) -> tuple[str, float] | None:
    """The highest-quality quantization whose estimate fits, with its size."""
    for quant in SUGGESTED:
        size = estimate_bytes(params, quant)
        if size is not None and size <= free_bytes:
            return quant, size
    return None


def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, context: int,
                   bytes_per_element: float = 2.0) -> float:
    """K and V for every layer and token: fp16 by default (llama.cpp's and vLLM's default)."""
    return 2 * layers * kv_heads * head_dim * context * bytes_per_element


def estimate(params: float, quantization: str, *, context: int = 0, layers: int = 0,
             kv_heads: int = 0, head_dim: int = 0) -> dict[str, float] | None:
    """Weights, KV cache and the total with overhead, in bytes (None: unknown quantization)."""
    weights = estimate_bytes(params, quantization)
    if weights is None:
        return None
    weights /= OVERHEAD
    kv = kv_cache_bytes(layers, kv_heads, head_dim, context) if layers and context else 0.0
    return {"weights": weights, "kv_cache": kv, "total": (weights + kv) * OVERHEAD}
