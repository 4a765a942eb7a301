"""The built-in model families (``caduceus_vep.model.registry``): Caduceus, HyenaDNA, NT-v2 (and Enformer
when its module is present). Each maps the protocol onto its tokens; see ``registry`` for the interface.

| family | tokens | SNP | pooled (1,536 bp window) | RC features | zero-shot |
|---|---|---|---|---|---|
| caduceus | 1 per base | L/2 | 1,537 tokens, L/2 ± 768, clamped | PS: second half (one pass); Ph: RC pass | MLM |
| hyenadna | 1 per base | L/2 | 1,537 tokens, L/2 ± 768, clamped | none (paper: forward only) | causal LM |
| ntv2 | 6-mers (N rule), ``ceil(L/6)`` tokens | script's search (token L/12 without N's) | 257 tokens, ± 128, clamped | none | MLM |
| enformer | 128-bp bins (896 at 196,608 bp) | centre bin | 13 bins, ± 6 | none | none |
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .registry import ModelFamily, Resources, clamped_pool, register


def _mlm_log_probs(module: nn.Module, inputs: Tensor, snp: Tensor, masked: bool, mask_id: int) -> Tensor:
    ids = inputs.clone()
    rows = torch.arange(ids.shape[0], device=ids.device)
    safe = snp.clamp(min=0)
    if masked:
        ids[rows, safe] = mask_id
    return torch.log_softmax(module.mlm_logits(ids)[rows, safe].float(), dim=-1)


@register
class CaduceusFamily(ModelFamily):
    """Caduceus-PS / -Ph (``caduceus_vep.model``): one token per base, MLM head."""

    name = "caduceus"
    model_types = ("caduceus",)
    zero_shot = "mlm"
    paper_context = 131_072
    resources = Resources(gpu_mem_gb_per_sequence=2.0, batch_size=4)

    def load(self, folder: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
        from .loading import load_caduceus

        return load_caduceus(folder, device=device)

    def check_config(self, folder: str | os.PathLike[str]) -> None:
        from .loading import read_config

        read_config(folder)

    def owns(self, module: nn.Module) -> bool:
        from .caduceus import Caduceus

        return isinstance(module, Caduceus)

    @property
    def mask_token_id(self) -> int:  # type: ignore[override]
        from .tokenizer import VOCAB

        return VOCAB["[MASK]"]

    def tokenize(self, sequences: Sequence[str]) -> Tensor:
        from .tokenizer import tokenize

        return tokenize(list(sequences))

    def forward(self, module: nn.Module, inputs: Tensor) -> Tensor:
        from .features import ps_forward_hidden

        hidden = module(inputs)
        return ps_forward_hidden(hidden) if module.is_rcps else hidden

    def hidden_size(self, module: nn.Module) -> int:
        return int(module.config.d_model)

    def rc_mode(self, module: nn.Module, rc_rule: str) -> str:
        if module.is_rcps:
            return "ps_second_half"  # free: both views come from one pass
        return "none" if rc_rule == "forward" else "ph_rc_pass"

    def pooled(self, module: nn.Module, refs: Sequence[str], alts: Sequence[str], pooling_window_bp: int,
               rc_mode: str) -> tuple[Tensor, Tensor | None]:
        """PS: the RC half as the paper's script takes it (length and channels flipped, so it pools the
        window mirrored about the centre); Ph: the RC pass in the same call, flipped back along length.
        Both views are pooled at the forward SNP's clamped window."""
        from .features import forward_and_rc_hidden

        half = self.pool_half_window(pooling_window_bp)
        ref_ids, alt_ids = self.tokenize(refs), self.tokenize(alts)
        snp = self.snp_positions(ref_ids, alt_ids, ref_ids.shape[1])
        snp = torch.cat([snp, snp])
        ids = torch.cat([ref_ids, alt_ids]).to(next(module.parameters()).device)
        if rc_mode == "none":
            return clamped_pool(self.forward(module, ids), snp, half), None
        if rc_mode not in ("ps_second_half", "ph_rc_pass"):
            raise ValueError(f"caduceus: unsupported rc_mode {rc_mode!r}")
        fwd, rc = forward_and_rc_hidden(module, ids, upstream_length_flip=True)
        return clamped_pool(fwd, snp, half), clamped_pool(rc, snp, half)

    def snp_log_probs(self, module: nn.Module, inputs: Tensor, snp: Tensor, masked: bool) -> Tensor:
        return _mlm_log_probs(module, inputs, snp, masked, self.mask_token_id)

    def llr_rc_pass(self, module: nn.Module) -> bool:
        return not getattr(module, "is_rcps", False)  # the PS head is RC-equivariant


@register
class HyenaDNAFamily(ModelFamily):
    """HyenaDNA (``caduceus_vep.model.hyenadna``): one token per base, causal LM head."""

    name = "hyenadna"
    model_types = ("hyenadna",)
    zero_shot = "causal_lm"
    paper_context = 131_072
    resources = Resources(gpu_mem_gb_per_sequence=3.5, batch_size=4)

    def load(self, folder: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
        from .hyenadna import load_hyenadna

        return load_hyenadna(folder, device=device)

    def check_config(self, folder: str | os.PathLike[str]) -> None:
        from .checkpoint_io import read_checkpoint_config
        from .hyenadna import HyenaDNAConfig

        read_checkpoint_config(folder, HyenaDNAConfig.from_dict)

    def owns(self, module: nn.Module) -> bool:
        from .hyenadna import HyenaDNA

        return isinstance(module, HyenaDNA)

    def check_context(self, module: nn.Module, context_length: int) -> None:
        if context_length > module.config.max_seq_len:
            raise ValueError(f"hyenadna: context_length {context_length} exceeds the checkpoint's max_seq_len "
                             f"{module.config.max_seq_len}")

    def tokenize(self, sequences: Sequence[str]) -> Tensor:
        from .hyenadna import tokenize

        return tokenize(list(sequences))

    def forward(self, module: nn.Module, inputs: Tensor) -> Tensor:
        return module(inputs)

    def snp_log_probs(self, module: nn.Module, inputs: Tensor, snp: Tensor, masked: bool) -> Tensor:
        """Next-token log-probabilities at the SNP: the LM output of the token before it. Masking the SNP
        changes nothing for a causal model (that output never sees the SNP), so ``llr_masked == llr``."""
        rows = torch.arange(inputs.shape[0], device=inputs.device)
        before = (snp - 1).clamp(min=0)
        logp = torch.log_softmax(module.lm_logits(inputs)[rows, before].float(), dim=-1)
        return torch.where((snp >= 1).view(-1, 1), logp, torch.full_like(logp, float("nan")))


@register
class NTv2Family(ModelFamily):
    """Nucleotide Transformer v2 (``caduceus_vep.model.ntv2``): 6-mer tokens, MLM head.

    A context of L bp is tokenized by the N rule and truncated to ``ceil(L/6)`` tokens (the script's
    2,048 for 12,288 bp; without N's exactly L/6 when 6 divides L); the SNP token is the script's
    search; the pooling window of W bp is ``W // 6 // 2`` tokens each side (±128 for 1,536 bp).
    """

    name = "ntv2"
    model_types = ("esm", "ntv2", "nucleotide_transformer")
    zero_shot = "mlm"
    paper_context = 12_288
    bp_per_position = 6
    resources = Resources(gpu_mem_gb_per_sequence=5.0, batch_size=8)

    def load(self, folder: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
        from .ntv2 import load_ntv2

        return load_ntv2(folder, device=device)

    def check_config(self, folder: str | os.PathLike[str]) -> None:
        from .checkpoint_io import read_checkpoint_config
        from .ntv2 import NTv2Config

        read_checkpoint_config(folder, NTv2Config.from_dict)

    def owns(self, module: nn.Module) -> bool:
        from .ntv2 import NucleotideTransformerV2

        return isinstance(module, NucleotideTransformerV2)

    def check_context(self, module: nn.Module, context_length: int) -> None:
        tokens = math.ceil(context_length / 6)
        if tokens > module.config.max_position_embeddings:
            raise ValueError(f"ntv2: a {context_length} bp context is {tokens} tokens, more than the checkpoint's "
                             f"max_position_embeddings {module.config.max_position_embeddings}")

    @property
    def mask_token_id(self) -> int:  # type: ignore[override]
        from .ntv2 import VOCAB

        return VOCAB["<mask>"]

    def tokenize(self, sequences: Sequence[str]) -> Tensor:
        from .ntv2 import tokenize

        sequences = list(sequences)
        max_tokens = math.ceil(len(sequences[0]) / 6) if sequences else None
        return tokenize(sequences, max_tokens=max_tokens)

    def forward(self, module: nn.Module, inputs: Tensor) -> Tensor:
        return module(inputs)

    def snp_log_probs(self, module: nn.Module, inputs: Tensor, snp: Tensor, masked: bool) -> Tensor:
        return _mlm_log_probs(module, inputs, snp, masked, self.mask_token_id)


try:  # Enformer is optional: its module needs the enformer-pytorch package.
    from . import enformer_family  # noqa: F401
except ImportError:
    pass
