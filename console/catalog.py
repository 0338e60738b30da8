"""Small language models worth pulling on an edge machine (Ollama names), with the
approximate download size of the default tag (Q4_K_M) from the Ollama library."""

from __future__ import annotations

from typing import Any

CURATED: list[dict[str, Any]] = [
    {"name": "qwen2.5:0.5b", "params": "0.5B", "quant": "Q4_K_M", "size_gb": 0.40,
     "good_for": "routing, classification, tiny devices"},
    {"name": "llama3.2:1b", "params": "1.2B", "quant": "Q8_0", "size_gb": 1.3,
     "good_for": "short answers, summaries"},
    {"name": "qwen2.5-coder:1.5b", "params": "1.5B", "quant": "Q4_K_M", "size_gb": 0.99,
     "good_for": "code completion and small edits"},
    {"name": "llama3.2:3b", "params": "3.2B", "quant": "Q4_K_M", "size_gb": 2.0,
     "good_for": "general assistant, tool calling"},
    {"name": "phi3.5", "params": "3.8B", "quant": "Q4_0", "size_gb": 2.2,
     "good_for": "reasoning in a small footprint"},
    {"name": "phi4-mini", "params": "3.8B", "quant": "Q4_K_M", "size_gb": 2.5,
     "good_for": "reasoning, function calling"},
    {"name": "qwen2.5-coder:7b", "params": "7.6B", "quant": "Q4_K_M", "size_gb": 4.7,
     "good_for": "code, where 8 GB of memory is free"},
]
