"""The world's text encoder: tokenizer, embeddings and one pre-norm transformer layer.

It plays CLIP's role: every prompt, the empty one included, becomes a fixed-length sequence
``(max_tokens, width)`` that the UNet cross-attends to. The empty prompt ``""`` is tokenized like
any other (``<bos> <eos> <pad>...``) and the training's caption dropout uses exactly that, so an
empty negative prompt in ComfyUI means "unconditional", as with SD.

Two tokenizers: world v1's whole-word vocabulary (unknown words map to ``<unk>``, which training
also shows the model now and then), and world v2's sub-word pieces (``bpe.py``; ``merges`` set),
with which no word is unknown and misspellings carry meaning, as with CLIP's BPE.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .bpe import encode_word, vocabulary
from .captions import words
from .files import load_checked, save_atomic

FORMAT = "toyworld-text/1"
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(len(SPECIALS))


@dataclass(frozen=True)
class TextConfig:
    vocab: tuple[str, ...]  # the words (or, with merges, the sub-word tokens), after the special tokens
    max_tokens: int = 24  # sequence length incl. <bos>/<eos>; longer prompts are truncated
    merges: tuple[str, ...] = ()  # BPE merges ("left right"); () = whole-word tokenizer
    width: int = 32  # = the UNet's context_dim
    heads: int = 4

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self.vocab)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TextConfig:
        d = json.loads(text)
        return cls(**{**d, "vocab": tuple(d["vocab"]), "merges": tuple(d.get("merges", ()))})

    @classmethod
    def with_merges(cls, merges: tuple[str, ...], **kwargs) -> TextConfig:
        """A sub-word (BPE) config whose vocabulary is the alphabet plus every merge's result."""
        return cls(vocab=vocabulary(merges), merges=tuple(merges), **kwargs)


def _token_ids(cfg: TextConfig, prompt: str, index: dict[str, int]) -> list[int]:
    if not cfg.merges:
        return [index.get(w, UNK) for w in words(prompt)]
    return [index[piece] for w in words(prompt) for piece in encode_word(w, cfg.merges)]


def tokenize(cfg: TextConfig, prompts: list[str]) -> torch.Tensor:
    """Prompts -> token ids (B, max_tokens) int64."""
    index = {w: i + len(SPECIALS) for i, w in enumerate(cfg.vocab)}
    ids = torch.full((len(prompts), cfg.max_tokens), PAD, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        tokens = [BOS, *_token_ids(cfg, prompt, index)][: cfg.max_tokens - 1] + [EOS]
        ids[row, : len(tokens)] = torch.tensor(tokens)
    return ids


class TextEncoder(nn.Module):
    """Token ids (B, T) -> embeddings (B, T, width); padding is masked out of attention."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.token = nn.Embedding(cfg.vocab_size, w)
        self.position = nn.Parameter(torch.randn(cfg.max_tokens, w) * 0.02)
        self.norm_attn = nn.LayerNorm(w)
        self.qkv = nn.Linear(w, 3 * w)
        self.proj = nn.Linear(w, w)
        self.norm_mlp = nn.LayerNorm(w)
        self.mlp = nn.Sequential(nn.Linear(w, 4 * w), nn.GELU(), nn.Linear(4 * w, w))
        self.norm_out = nn.LayerNorm(w)
        nn.init.normal_(self.token.weight, std=0.5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.token(ids) + self.position[: ids.shape[1]]
        keep = rearrange(ids != PAD, "b t -> b 1 1 t")
        q, k, v = rearrange(self.qkv(self.norm_attn(x)), "b t (n h d) -> n b h t d", n=3, h=self.cfg.heads)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        x = x + self.proj(rearrange(attn, "b h t d -> b t (h d)"))
        x = x + self.mlp(self.norm_mlp(x))
        return self.norm_out(x)

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> (B, max_tokens, width) on this module's device."""
        return self(tokenize(self.cfg, prompts).to(self.position.device))


def save_text_encoder(encoder: TextEncoder, path) -> None:
    save_atomic(encoder.state_dict(), path, {"format": FORMAT, "config": encoder.cfg.to_json()})


def load_text_encoder(path) -> TextEncoder:
    """Rebuild the encoder (vocabulary included) from the file's metadata; strict load."""
    sd, meta = load_checked(path, FORMAT)
    encoder = TextEncoder(TextConfig.from_json(meta["config"]))
    encoder.load_state_dict(sd, strict=True)
    return encoder.eval()
