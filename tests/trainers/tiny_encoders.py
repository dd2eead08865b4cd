"""Tiny randomly initialised encoders with a WordPiece vocabulary of the reviews, for the
transformers trainer's tests (the real checkpoint is only used where quality is tested)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Literal

import pandas as pd
import torch
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizer,
    DistilBertConfig,
    DistilBertModel,
    DistilBertTokenizer,
)

REVIEWS = Path(__file__).resolve().parents[2] / "src" / "driftloop" / "data" / "reviews.csv.gz"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CLASS_WORDS = {
    "Food-Positive": ["good", "great", "tasty"],
    "Food-Negative": ["bad", "awful", "stale"],
    "Movies-Positive": ["film", "brilliant", "loved"],
}


def reviews(per_class: int, seed: int = 0) -> pd.DataFrame:
    frame = pd.read_csv(REVIEWS)
    return frame.groupby("label").sample(n=per_class, random_state=seed).reset_index(drop=True)


def write_tiny_encoder(
    directory: Path,
    texts: pd.Series,
    *,
    architecture: Literal["bert", "distilbert"] = "bert",
    layers: int = 2,
    dropout: float = 0.1,
) -> Path:
    """Save a random encoder (hidden 32) and its WordPiece tokenizer of ``texts``' words in
    ``directory``."""
    words = Counter(word for text in texts for word in re.findall(r"\w+|[^\w\s]", text.lower()))
    extra = [w for class_words in CLASS_WORDS.values() for w in class_words]
    vocab = SPECIALS + extra + [w for w, _ in words.most_common(800) if w not in extra]
    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    tokenizer = (BertTokenizer if architecture == "bert" else DistilBertTokenizer)(str(vocab_file))
    torch.manual_seed(0)
    if architecture == "bert":
        BertModel(
            BertConfig(
                vocab_size=len(vocab),
                hidden_size=32,
                num_hidden_layers=layers,
                num_attention_heads=2,
                intermediate_size=64,
                max_position_embeddings=64,
                hidden_dropout_prob=dropout,
                attention_probs_dropout_prob=dropout,
            )
        ).save_pretrained(directory)
    else:
        DistilBertModel(
            DistilBertConfig(
                vocab_size=len(vocab),
                dim=32,
                n_layers=layers,
                n_heads=2,
                hidden_dim=64,
                max_position_embeddings=64,
                dropout=dropout,
                attention_dropout=dropout,
            )
        ).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
