"""Build a Hugging Face tokenizer directory equivalent to tiktoken's cl100k_base (the
tokenizer llmload counts with by default) from the BPE ranks file shipped inside the
tiktoken-rs crate sources, offline. GuideLLM loads it with AutoTokenizer.from_pretrained(dir).

usage: python make_tokenizer.py RANKS_FILE OUT_DIR
"""

import sys

from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

CL100K_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIAL = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|endofprompt|>"]


def main() -> None:
    ranks, out = sys.argv[1], sys.argv[2]
    conv = TikTokenConverter(vocab_file=ranks, pattern=CL100K_PATTERN, extra_special_tokens=SPECIAL)
    tok = PreTrainedTokenizerFast(tokenizer_object=conv.converted(), eos_token="<|endoftext|>")
    tok.save_pretrained(out)

    # Check against tiktoken itself when it is installed (it is, in bench/out's venv).
    try:
        import tiktoken
        import tiktoken.load
    except ImportError:
        return
    enc = tiktoken.Encoding(
        "cl100k_base",
        pat_str=CL100K_PATTERN,
        mergeable_ranks=tiktoken.load.load_tiktoken_bpe(ranks),
        special_tokens={},
    )
    samples = [
        "Hello world, this is a test of the tokenizer's agreement: 12345 tokens!",
        "  leading spaces\n\nnew lines\ttabs, ünïcödé, 漢字, emoji 😀 and code: fn main() { x += 1; }",
    ]
    for s in samples:
        a, b = enc.encode(s), tok.encode(s, add_special_tokens=False)
        if a != b:
            sys.exit(f"tokenizer mismatch on {s!r}:\n tiktoken {a}\n hf       {b}")
    print(f"tokenizer written to {out}; agrees with tiktoken on {len(samples)} samples")


if __name__ == "__main__":
    main()
