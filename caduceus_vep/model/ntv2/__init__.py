"""Nucleotide Transformer v2 (``InstaDeepAI/nucleotide-transformer-v2-500m-multi-species``) in plain PyTorch.

LICENCE: the NT-v2 code and weights are CC BY-NC-SA 4.0 (non-commercial, share-alike). This module
is our own implementation written from the published architecture and contains none of their
code, but the weights it loads carry that licence: users download them themselves and may not use
them commercially.

Architecture (from the official JAX code, GitHub ``instadeepai/nucleotide-transformer``, and its
HF PyTorch port): an ESM-style pre-LayerNorm encoder with rotary position embeddings, a bias-free
SwiGLU feed-forward and LayerNorm eps 1e-12; the released ESM layout is loaded key for key. One
module per block: ``rotary``, ``attention``, ``ffn`` (SwiGLU), ``layer`` (layer + stack),
``model`` (embeddings, encoder, MLM head), ``tokenizer`` (6-mers with the N rule; context, SNP
token and pooling window of the paper), ``checkpoint`` (strict loader, writer, tiny checkpoints).

In the paper's protocol (kuleshov-group/caduceus ``vep_embeddings.py``): 12,288 bp of context
-> 2,048 6-mer tokens (``add_special_tokens=False``, truncated to 2,048 when N's add tokens); the
SNP token is 1,024 (its first base is bp 6,144) unless the script's search moves it; the encoder's
last hidden state is mean-pooled over the SNP token +- 128 (257 tokens, clamped); forward features
only.
"""

from .checkpoint import (
    build_ntv2,
    load_ntv2,
    save_ntv2,
    tiny_config,
    write_tiny_checkpoint,
)
from .config import NTv2Config
from .model import NucleotideTransformerV2
from .tokenizer import (
    PAPER_CONTEXT_BP,
    PAPER_MAX_TOKENS,
    PAPER_POOL_HALF_WINDOW,
    VOCAB,
    decode,
    encode,
    pooling_indices,
    tokenize,
    variant_token_index,
)

__all__ = [
    "PAPER_CONTEXT_BP",
    "PAPER_MAX_TOKENS",
    "PAPER_POOL_HALF_WINDOW",
    "VOCAB",
    "NTv2Config",
    "NucleotideTransformerV2",
    "build_ntv2",
    "decode",
    "encode",
    "load_ntv2",
    "pooling_indices",
    "save_ntv2",
    "tiny_config",
    "tokenize",
    "variant_token_index",
    "write_tiny_checkpoint",
]
