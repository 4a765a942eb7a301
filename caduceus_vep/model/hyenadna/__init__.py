"""HyenaDNA (``LongSafari/hyenadna-medium-160k-seqlen-hf``) in plain PyTorch, loading the released layout key for key.

Built from the equations of the official code (GitHub ``HazyResearch/hyena-dna``, Apache-2.0:
``standalone_hyenadna.py`` and the Hub port ``modeling_hyena.py``, which agree exactly); none of
that code is imported or run. One module per block: ``filter`` (implicit long filter with the
stored positional tensors and the shared sine frequency), ``operator`` (the order-2 Hyena
mixer), ``block`` (pre-LN layer), ``model`` (backbone, final LayerNorm, LM head), ``tokenizer``
(character ids; how the paper's context, SNP and pooling window map onto tokens),
``checkpoint`` (strict loader, writer, tiny random checkpoints).

In the paper's protocol (kuleshov-group/caduceus ``vep_embeddings.py``): 131,072 bp of context
= 131,072 tokens (``add_special_tokens=False``); the SNP is token 65,536; the last hidden state
(after ``ln_f``) is mean-pooled over tokens 65,536 +- 768 (1,537 tokens, clamped); forward
features only (no reverse-complement pass is needed for the SVM protocol).
"""

from .checkpoint import (
    build_hyenadna,
    load_hyenadna,
    save_hyenadna,
    tiny_config,
    write_tiny_checkpoint,
)
from .config import HyenaDNAConfig
from .model import HyenaDNA
from .tokenizer import (
    PAPER_CONTEXT_BP,
    PAPER_POOL_HALF_WINDOW,
    VOCAB,
    pooling_indices,
    snp_token_index,
    tokenize,
    variant_token_index,
)

__all__ = [
    "PAPER_CONTEXT_BP",
    "PAPER_POOL_HALF_WINDOW",
    "VOCAB",
    "HyenaDNA",
    "HyenaDNAConfig",
    "build_hyenadna",
    "load_hyenadna",
    "pooling_indices",
    "save_hyenadna",
    "snp_token_index",
    "tiny_config",
    "tokenize",
    "variant_token_index",
    "write_tiny_checkpoint",
]
