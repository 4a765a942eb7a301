"""Caduceus in plain PyTorch: runs on CPU, loads the released Hugging Face checkpoints.

The upstream implementation needs the CUDA kernels of mamba-ssm; this one computes the same
function on CPU with a small compiled selective-scan kernel (``_scan_kernel.c``, built by
``pip install``; a chunked PyTorch scan when it is missing) and uses the mamba-ssm kernels only when
they are installed and the tensors are on a GPU. ``mamba_ssm`` is imported lazily, never at import time.
"""

from .caduceus import Caduceus
from .config import CaduceusConfig, SsmConfig
from .features import conjoined_hidden, ph_rc_hidden, ps_forward_hidden, ps_rc_hidden
from .initialization import build_caduceus
from .loading import CheckpointError, load_caduceus, save_caduceus
from .scan import scan_backend, selective_scan, selective_scan_reference
from .tokenizer import COMPLEMENT_MAP, VOCAB, reverse_complement_ids, tokenize

__all__ = [
    "COMPLEMENT_MAP",
    "Caduceus",
    "CaduceusConfig",
    "CheckpointError",
    "SsmConfig",
    "VOCAB",
    "build_caduceus",
    "conjoined_hidden",
    "load_caduceus",
    "ph_rc_hidden",
    "ps_forward_hidden",
    "ps_rc_hidden",
    "reverse_complement_ids",
    "save_caduceus",
    "scan_backend",
    "selective_scan",
    "selective_scan_reference",
    "tokenize",
]
