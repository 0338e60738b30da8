"""Write a tiny random Llama in Hugging Face format for vLLM's CPU build (no model can be
downloaded here). Run with the vLLM venv's Python (it has transformers and tokenizers):

    .venv-vllm/bin/python tests/support/tiny_hf_model.py OUT_DIR

A byte-level BPE tokenizer trained on a few hundred generated lines (vocab ~1,024) with
ChatML's special tokens and Hermes' `<tool_call>` tags, a ChatML chat template that
renders tools and tool calls (in chat_template.jinja and tokenizer_config.json), and a
2-layer model with head size 32 (vLLM's CPU attention takes 32, 64, 80, …). The weights
are random: it writes nonsense, and calls a tool only when decoding is constrained
(`tool_choice: "required"`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>",
            "<tool_response>", "</tool_response>"]
CHAT_TEMPLATE = """\
{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}# Tools

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}\
<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{% if message.content %}{{ message.content }}{% endif %}
{%- for call in message.tool_calls or [] %}
{%- set f = call.function if call.function is defined else call %}
<tool_call>
{"name": "{{ f.name }}", "arguments": \
{{ f.arguments if f.arguments is string else f.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""
WORDS = ["pump", "valve", "station", "flow", "pressure", "report", "sensor", "north", "south",
         "edge", "model", "token", "agent", "tool", "call", "time", "zone", "sum", "number",
         "city", "weather", "alert", "restart", "engine"]


def corpus() -> list[str]:
    lines = []
    for i in range(400):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(8 + i % 5)]
        lines.append(" ".join(words) + f" {i} {{\"name\": \"get_sum\", \"a\": {i % 10}}}")
    return lines


def write(out: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus(), trainers.BpeTrainer(
        vocab_size=1024, special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|im_end|>",
        pad_token="<|endoftext|>", unk_token="<|endoftext|>",
        additional_special_tokens=SPECIALS[1:], chat_template=CHAT_TEMPLATE)
    tokenizer.save_pretrained(out)
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = CHAT_TEMPLATE  # older readers look only here
    config_path.write_text(json.dumps(config, indent=2))

    torch.manual_seed(0)
    vocab = len(tokenizer)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False, torch_dtype="float32"))
    model.save_pretrained(out, safe_serialization=True)
    return out


if __name__ == "__main__":
    print(write(Path(sys.argv[1])))
