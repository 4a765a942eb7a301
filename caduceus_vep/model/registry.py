"""The model interface: what an architecture declares so that the workflow can embed and score with it.

Adding a model is one :class:`ModelFamily` subclass (in its own module, decorated with
:func:`register` and imported at the end of ``caduceus_vep/model/families.py``, as
``enformer_family`` is), its name added to the schema's ``models[].architecture`` enum, plus a
``models[]`` entry in the config (``architecture: <name>``, or left out when the checkpoint's
``config.json`` ``model_type`` names it). The embedding, zero-shot and scoring
stages only call the methods below; they know nothing model-specific.

What a family declares (class attributes and methods):

- ``name`` (the config's ``architecture``) and ``model_types`` (``config.json`` ``model_type`` values
  it claims, for inference);
- :meth:`load`: a local checkpoint folder (the ``fetch_model`` rule's record turns a Hub id into one)
  into an eval-mode module whose ``provenance`` holds ``weights_sha256``; safetensors or
  ``weights_only`` pickles only, no remote code, missing/unexpected keys an error listing them
  (the loaders in ``caduceus_vep.model`` do this); :meth:`check_config` validates ``config.json``
  alone (run by ``fetch_model`` on the submitting machine);
- :meth:`tokenize` (sequences -> model input) and :meth:`forward` (input -> last hidden state
  ``[B, T, H]``, T tokens or bins);
- the SNP's position in the model's tokens or bins (:meth:`snp_positions`: the paper script's rule,
  ``len//2`` unless ref and alt tokens agree there, then the last position where they differ) and the
  pooling half-window in tokens for a pooling window in bp (:meth:`pool_half_window`); pooling is
  always the *clamped* mean of :func:`clamped_pool` (protocol §2): the index list
  ``clamp(v + arange(-w, w + 1), 0, T - 1)`` is gathered, edge tokens counting once per clamped index;
- which reverse-complement features it computes (:meth:`rc_mode`): ``none`` (forward only; the
  stored RC columns are copies of the forward ones), ``rc_pass`` (a second pass on the reverse
  complement, pooled around its own SNP token), or a family-specific mode (Caduceus-PS:
  ``ps_second_half``, both views from one pass);
- zero-shot capability ``zero_shot``: ``"mlm"`` (log-probabilities at the SNP token of the ref
  context), ``"causal_lm"`` (next-token log-probabilities at the SNP from the token before it) or
  ``None`` (embedding distances only); :meth:`snp_log_probs` implements it;
- ``hidden_size`` (:meth:`hidden_size`), the paper's context (``paper_context``) and rough
  ``resources`` (GPU memory per sequence at the paper context, a batch size that fits a 40 GB GPU).
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .checkpoint_io import CONFIG_NAME, CheckpointError, read_config_json
from .variant_tokens import variant_token_index

log = logging.getLogger(__name__)

RC_MODES = ("none", "rc_pass", "ps_second_half", "ph_rc_pass")
_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def reverse_complement(sequence: str) -> str:
    """Reverse complement of a DNA string (A<->T, C<->G, N stays N)."""
    return sequence.translate(_COMPLEMENT)[::-1]


def clamped_indices(snp: Tensor, n_positions: int, half_window: int) -> Tensor:
    """``clamp(snp[:, None] + arange(-w, w + 1), 0, n - 1)`` [B, 2w + 1] (protocol §2's clamped window)."""
    offsets = torch.arange(-half_window, half_window + 1, device=snp.device)
    return (snp.view(-1, 1) + offsets).clamp(0, n_positions - 1)


def clamped_pool(hidden: Tensor, snp: Tensor, half_window: int) -> Tensor:
    """Mean of ``hidden`` [B, T, H] over each row's clamped window around ``snp`` [B]: float32 [B, H]."""
    idx = clamped_indices(snp.to(hidden.device), hidden.shape[1], half_window)
    gathered = torch.gather(hidden, 1, idx.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    return gathered.float().mean(dim=1)


@dataclass(frozen=True)
class Resources:
    """Rough needs of one sequence at the paper's context (estimates, not measured on a GPU here)."""

    gpu_mem_gb_per_sequence: float
    batch_size: int
    mem_mb: int = 8000


class ModelFamily(ABC):
    """One architecture (see the module docstring). Instances are stateless; the module is passed in."""

    name: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]] = ()
    zero_shot: ClassVar[str | None] = None
    paper_context: ClassVar[int]
    bp_per_position: ClassVar[int] = 1
    resources: ClassVar[Resources]
    mask_token_id: ClassVar[int | None] = None

    # ------------------------------------------------------------------ checkpoints

    @abstractmethod
    def load(self, folder: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
        """An eval-mode module from a local checkpoint folder; ``module.provenance['weights_sha256']`` set."""

    def check_config(self, folder: str | os.PathLike[str]) -> None:
        """Validate ``<folder>/config.json`` without building the model (``fetch_model``)."""
        read_config_json(folder)

    def check_context(self, module: nn.Module, context_length: int) -> None:
        """Raise ``ValueError`` when the module cannot take ``context_length`` bp (default: any)."""
        return None

    def owns(self, module: nn.Module) -> bool:
        """Whether a loaded module is of this family (for modules loaded outside :func:`load_model`)."""
        return False

    # ------------------------------------------------------------------ tokens

    @abstractmethod
    def tokenize(self, sequences: Sequence[str]) -> Tensor:
        """Model input for equally long DNA strings (uppercase A, C, G, T, N)."""

    @abstractmethod
    def forward(self, module: nn.Module, inputs: Tensor) -> Tensor:
        """Last hidden state [B, T, H] (after the final norm) of tokenized inputs."""

    def hidden_size(self, module: nn.Module) -> int:
        return int(module.hidden_size)

    def pool_half_window(self, pooling_window_bp: int) -> int:
        """Tokens (or bins) each side of the SNP's for a pooling window of ``pooling_window_bp`` bp."""
        return pooling_window_bp // self.bp_per_position // 2

    def snp_positions(self, ref_inputs: Tensor, alt_inputs: Tensor, n_positions: int) -> Tensor:
        """The SNP's token per ref/alt pair [B] (the script's search, :func:`variant_token_index`)."""
        return torch.tensor([variant_token_index(r, a) for r, a in zip(ref_inputs, alt_inputs)], dtype=torch.long)

    # ------------------------------------------------------------------ reverse complement

    def rc_mode(self, module: nn.Module, rc_rule: str) -> str:
        """``rc_pass`` when the classifier rule uses RC features (``ps``/``ph``), else ``none``."""
        return "none" if rc_rule == "forward" else "rc_pass"

    # ------------------------------------------------------------------ pooled features

    def pooled(self, module: nn.Module, refs: Sequence[str], alts: Sequence[str], pooling_window_bp: int,
               rc_mode: str) -> tuple[Tensor, Tensor | None]:
        """Pooled features of the ref and alt contexts: forward [2B, H] (refs first) and RC [2B, H] or None.

        Default: each strand tokenized on its own and pooled around its own SNP token (for
        ``rc_pass`` the reverse-complement strings join the same model call).
        """
        half = self.pool_half_window(pooling_window_bp)
        strands = [(list(refs), list(alts))]
        if rc_mode == "rc_pass":
            strands.append(([reverse_complement(s) for s in refs], [reverse_complement(s) for s in alts]))
        elif rc_mode != "none":
            raise ValueError(f"{self.name}: unsupported rc_mode {rc_mode!r}")
        device = _device(module)
        inputs = [(self.tokenize(r), self.tokenize(a)) for r, a in strands]
        hidden = self.forward(module, torch.cat([t for pair in inputs for t in pair]).to(device))
        n = len(refs)
        pooled = []
        for k, (r, a) in enumerate(inputs):
            snp = self.snp_positions(r, a, hidden.shape[1])
            _warn_unplaced(self.name, snp)
            block = hidden[2 * n * k: 2 * n * (k + 1)]
            pooled.append(clamped_pool(block, torch.cat([snp, snp]), half))
        return pooled[0], (pooled[1] if len(pooled) > 1 else None)

    # ------------------------------------------------------------------ zero-shot

    def snp_log_probs(self, module: nn.Module, inputs: Tensor, snp: Tensor, masked: bool) -> Tensor | None:
        """Log-probabilities [B, V] of the SNP token's vocabulary given the ref context; None = not computed.

        MLM: softmax of the LM head at the SNP token (``masked``: that token replaced by the mask
        token first). Causal LM: next-token log-probabilities from the token before the SNP.
        """
        raise NotImplementedError(f"{self.name} has no zero-shot head")

    def llr_rc_pass(self, module: nn.Module) -> bool:
        """Whether the zero-shot LLR runs a reverse-complement pass (skipped for RC-equivariant heads)."""
        return True

    def snp_llr(self, module: nn.Module, contexts: Sequence[str], ref_alleles: Sequence[str], alt_alleles: Sequence[str],
                *, masked: bool, rc_pass: bool) -> tuple[Tensor, Tensor]:
        """Forward and RC LLRs [B]: log p(alt) - log p(ref) at the SNP token of each context (SNP at L/2).

        The ref and alt tokens at the SNP come from the context with REF resp. ALT written at L/2 (so a
        flagged REF mismatch scores the table's REF, as before); the logits from the context as it is.
        The RC pass does the same on the reverse-complement strings. ``rc_pass=False`` returns the
        forward LLR twice (valid for RC-equivariant models only).
        """
        from caduceus_vep.windows import alt_sequence

        def strand(ctx: list[str], refq: list[str], altq: list[str]) -> Tensor:
            device = _device(module)
            ref_in, alt_in = self.tokenize(refq), self.tokenize(altq)
            snp = self.snp_positions(ref_in, alt_in, ref_in.shape[1])
            rows = torch.arange(len(ctx))
            logp = self.snp_log_probs(module, self.tokenize(ctx).to(device), snp.to(device), masked)
            if logp is None:
                return torch.full((len(ctx),), float("nan"))
            ref_tok, alt_tok = ref_in[rows, snp].to(device), alt_in[rows, snp].to(device)
            rows = rows.to(device)
            out = logp[rows, alt_tok] - logp[rows, ref_tok]
            return torch.where(snp.to(device) >= 0, out, torch.full_like(out, float("nan")))

        ctx = list(contexts)
        refq = [alt_sequence(s, r, len(s) // 2) for s, r in zip(ctx, ref_alleles)]
        altq = [alt_sequence(s, a, len(s) // 2) for s, a in zip(ctx, alt_alleles)]
        fwd = strand(ctx, refq, altq)
        if not rc_pass:
            return fwd, fwd.clone()
        rc = strand(*([reverse_complement(s) for s in group] for group in (ctx, refq, altq)))
        return fwd, rc

    def describe(self) -> dict[str, Any]:
        return {"architecture": self.name, "zero_shot": self.zero_shot, "paper_context": self.paper_context,
                "bp_per_position": self.bp_per_position, "resources": self.resources.__dict__}


def _device(module: nn.Module) -> torch.device:
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _warn_unplaced(name: str, snp: Tensor) -> None:
    missing = int((snp < 0).sum())
    if missing:
        log.warning("%s: %d sequence(s) whose ref and alt tokens never differ (the SNP fell outside the tokenized "
                    "context); their window is clamped at the start, as the index -1 is", name, missing)


# ---------------------------------------------------------------------- registry

_FAMILIES: dict[str, ModelFamily] = {}


def register(family: type[ModelFamily]) -> type[ModelFamily]:
    """Class decorator: make ``family`` available under its ``name``."""
    _FAMILIES[family.name] = family()
    return family


def _ensure_builtin() -> None:
    if not _FAMILIES:
        from . import families  # noqa: F401  (registers the built-in families)


def families() -> dict[str, ModelFamily]:
    """Every registered family by name."""
    _ensure_builtin()
    return dict(_FAMILIES)


def get_family(name: str) -> ModelFamily:
    _ensure_builtin()
    if name not in _FAMILIES:
        raise ValueError(f"unknown model architecture {name!r}; known: {sorted(_FAMILIES)}")
    return _FAMILIES[name]


def infer_architecture(folder: str | os.PathLike[str]) -> str:
    """The family claiming ``config.json``'s ``model_type`` (an error naming the key when none does)."""
    raw = read_config_json(folder)
    model_type = raw.get("model_type")
    for family in families().values():
        if model_type in family.model_types:
            return family.name
    raise CheckpointError(f"{Path(folder) / CONFIG_NAME}: model_type {model_type!r} is not one this package knows "
                          f"({ {f.name: list(f.model_types) for f in families().values()} }); set models[].architecture "
                          f"to one of {sorted(families())}")


def resolve_family(architecture: str | None, folder: str | os.PathLike[str] | None) -> ModelFamily:
    """The family named by the config's ``architecture``, else the one inferred from the checkpoint."""
    if architecture:
        return get_family(architecture)
    if folder is None:
        raise ValueError("the model's architecture is not set and there is no checkpoint folder to infer it from")
    return get_family(infer_architecture(folder))


def family_of_module(module: nn.Module) -> ModelFamily:
    """The family a loaded module belongs to (its ``family`` attribute, else by class; Caduceus by default)."""
    name = getattr(module, "family_name", None)
    if name:
        return get_family(name)
    for family in families().values():
        if family.owns(module):
            return family
    return get_family("caduceus")


@dataclass
class LoadedModel:
    """A module with its family and the settings it runs with."""

    family: ModelFamily
    module: nn.Module
    context_length: int | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def hidden_size(self) -> int:
        return self.family.hidden_size(self.module)


def as_loaded(model: nn.Module | LoadedModel) -> LoadedModel:
    """Wrap a bare module (the API before the interface) with its family."""
    if isinstance(model, LoadedModel):
        return model
    return LoadedModel(family_of_module(model), model, provenance=getattr(model, "provenance", {}))


def load_model(spec: dict, device: str | torch.device = "cpu", context_length: int | None = None) -> LoadedModel:
    """Load ``spec['path']`` (a local folder) with the family of ``spec['architecture']`` (or inferred)."""
    family = resolve_family(spec.get("architecture"), spec["path"])
    module = family.load(spec["path"], device=device)
    module.family_name = family.name
    if context_length:
        family.check_context(module, int(context_length))
    provenance = getattr(module, "provenance", {})
    provenance.setdefault("architecture", family.name)
    return LoadedModel(family, module, context_length, provenance)
