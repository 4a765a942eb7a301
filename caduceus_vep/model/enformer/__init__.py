"""Enformer (``EleutherAI/enformer-official-rough``) through PyPI ``enformer-pytorch``, the implementation the paper used.

LICENCE: enformer-pytorch is MIT (lucidrains). The weights are a conversion of DeepMind's Enformer
(Avsec et al. 2021) published by EleutherAI on the Hugging Face Hub; their terms are set by that
model card and the original DeepMind release (Apache-2.0 for the deepmind-research code and the TF
Hub model, as far as is known here; not checked against the Hub card, which is unreachable here).
Users download the weights themselves.

The model object is enformer-pytorch's own ``Enformer`` (installed with the ``enformer`` extra,
imported lazily: it imports transformers), built from our bounded settings with
``use_tf_gamma=False`` and loaded strictly from a local folder or the Hugging Face cache
(``checkpoint``); neither transformers' ``from_pretrained`` nor any checkpoint code is run.

In the paper's protocol (kuleshov-group/caduceus ``vep_embeddings.py``): a 196,608 bp context
with the SNP at index 98,304, one-hot (A, C, G, T; N all zeros); the trunk output
(``return_embeddings=True``, after the final pointwise block; 3,072 wide) over the 896 cropped
bins of 128 bp is mean-pooled over bins 442..454 (448 +- 6, 1,664 bp); forward features only.

API for the embedding stage::

    model = load_enformer(folder_or_hub_id, device="cuda")            # or build_random_enformer(...)
    feats = pooled_features(model, sequences)                         # [N, 3072] float32, forward strand
    rc = pooled_features(model, sequences, strand="reverse")          # optional post-hoc RC feature
    write_tiny_checkpoint(folder)                                     # demo/tests: NOT PRETRAINED
"""

from .checkpoint import (
    ENFORMER_PYTORCH_VERSION,
    INSTALL_HINT,
    NOT_PRETRAINED,
    build_enformer,
    build_random_enformer,
    enformer_pytorch,
    load_enformer,
    read_settings,
    save_enformer,
    tiny_settings,
    write_tiny_checkpoint,
)
from .config import EnformerSettings
from .encoding import (
    PAPER_CONTEXT_BP,
    PAPER_POOLING_WINDOW_BP,
    PAPER_SNP_BIN,
    PAPER_TARGET_LENGTH,
    one_hot,
    output_bins,
    pooling_bins,
    reverse_complement_one_hot,
)
from .features import pooled_features, trunk_embeddings

# Short names for the generic model interface: load(folder) -> model, save_random(folder) -> weights path.
load = load_enformer
save_random = write_tiny_checkpoint

__all__ = [
    "ENFORMER_PYTORCH_VERSION",
    "INSTALL_HINT",
    "NOT_PRETRAINED",
    "PAPER_CONTEXT_BP",
    "PAPER_POOLING_WINDOW_BP",
    "PAPER_SNP_BIN",
    "PAPER_TARGET_LENGTH",
    "EnformerSettings",
    "build_enformer",
    "build_random_enformer",
    "enformer_pytorch",
    "load",
    "load_enformer",
    "one_hot",
    "output_bins",
    "pooled_features",
    "pooling_bins",
    "read_settings",
    "reverse_complement_one_hot",
    "save_enformer",
    "save_random",
    "tiny_settings",
    "trunk_embeddings",
    "write_tiny_checkpoint",
]
