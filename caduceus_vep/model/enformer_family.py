"""Enformer as a model family (``caduceus_vep.model.registry``), over ``caduceus_vep.model.enformer``.

One-hot input (N = zeros); the "tokens" are the trunk's 128-bp output bins (896 at 196,608 bp, the
crop centred on the SNP); the SNP's bin is the centre bin ``T // 2`` (448); the 1,536 bp pooling
window is ``1536 // 128 // 2 = 6`` bins each side (13 bins, clamped like every window). Forward
features only in the paper; an RC pass, when asked for, runs the reverse complement and flips the
bins back (as the paper's script does), pooled at the same bins. No LM head: zero-shot scores are
the embedding distances only (NaN LLRs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .registry import ModelFamily, Resources, clamped_pool, register


@register
class EnformerFamily(ModelFamily):
    name = "enformer"
    model_types = ("enformer",)
    zero_shot = None
    paper_context = 196_608
    bp_per_position = 128
    resources = Resources(gpu_mem_gb_per_sequence=4.0, batch_size=2)

    def load(self, folder: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
        from .enformer import load_enformer

        return load_enformer(folder, device=device)

    def check_config(self, folder: str | os.PathLike[str]) -> None:
        from .enformer import read_settings

        read_settings(folder)

    def owns(self, module: nn.Module) -> bool:
        from .enformer import EnformerSettings

        return isinstance(getattr(module, "settings", None), EnformerSettings)

    def check_context(self, module: nn.Module, context_length: int) -> None:
        from .enformer import output_bins

        output_bins(context_length, module.settings.target_length, module.settings.bin_bp)  # ValueError if not

    def hidden_size(self, module: nn.Module) -> int:
        return int(module.settings.embedding_dim)

    def tokenize(self, sequences: Sequence[str]) -> Tensor:
        from .enformer import one_hot

        return one_hot(list(sequences))

    def forward(self, module: nn.Module, inputs: Tensor) -> Tensor:
        from .enformer import trunk_embeddings

        return trunk_embeddings(module, inputs.to(next(module.parameters()).dtype))

    def snp_positions(self, ref_inputs: Tensor, alt_inputs: Tensor, n_positions: int) -> Tensor:
        return torch.full((ref_inputs.shape[0],), n_positions // 2, dtype=torch.long)

    def pooled(self, module: nn.Module, refs: Sequence[str], alts: Sequence[str], pooling_window_bp: int,
               rc_mode: str) -> tuple[Tensor, Tensor | None]:
        from .enformer import trunk_embeddings

        if rc_mode not in ("none", "rc_pass"):
            raise ValueError(f"enformer: unsupported rc_mode {rc_mode!r}")
        half = self.pool_half_window(pooling_window_bp)
        x = self.tokenize(list(refs) + list(alts)).to(device=next(module.parameters()).device,
                                                      dtype=next(module.parameters()).dtype)
        hidden = trunk_embeddings(module, x)
        snp = torch.full((x.shape[0],), hidden.shape[1] // 2, dtype=torch.long)
        fwd = clamped_pool(hidden, snp, half)
        if rc_mode == "none":
            return fwd, None
        return fwd, clamped_pool(trunk_embeddings(module, x, strand="reverse"), snp, half)
