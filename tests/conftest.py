"""Shared fixtures: small genomes and tables written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def write_fasta(path: Path, contigs: dict[str, str]) -> Path:
    with open(path, "w") as handle:
        for name, seq in contigs.items():
            handle.write(f">{name}\n")
            for i in range(0, len(seq), 50):
                handle.write(seq[i:i + 50] + "\n")
    return path


@pytest.fixture
def small_genome(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Two random contigs (chr1 5 kb, chr2 3 kb) with a lowercase stretch and an N run on chr2."""
    rng = np.random.default_rng(7)
    chr1 = "".join(rng.choice(list("ACGT"), 5_000))
    chr2 = list("".join(rng.choice(list("ACGT"), 3_000)))
    chr2[1_000:1_030] = "N" * 30
    chr2 = "".join(chr2)
    contigs = {"chr1": chr1[:2_000] + chr1[2_000:2_100].lower() + chr1[2_100:], "chr2": chr2}
    return write_fasta(tmp_path / "genome.fa", contigs), {"chr1": chr1, "chr2": chr2}


EQTL_HEADER = "CHROM,POS,SNP,REF,ALT,label,split,tissue,distance_to_nearest_TSS"


def random_scan_inputs(length: int, *, dtype=None, seed: int = 0, batch: int = 2, d_inner: int = 6, n: int = 4) -> dict:
    """Seeded selective-scan arguments (mamba_ssm layout) with every optional input present."""
    import torch

    dtype = dtype or torch.float32
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype)  # noqa: E731
    return dict(
        u=r(batch, d_inner, length),
        delta=torch.rand(batch, d_inner, length, generator=g, dtype=dtype) * 0.5,
        A=-torch.exp(r(d_inner, n)),
        B=r(batch, n, length),
        C=r(batch, n, length),
        D=r(d_inner),
        z=r(batch, d_inner, length),
        delta_bias=r(d_inner) * 0.5,
    )


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Unit tests use tiny models: thread hand-offs cost more than they save, and on a busy
    machine oversubscribed threads make them many times slower. (Workflow tests run in
    subprocesses and set their own threads.)"""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
