"""Variant-effect prediction with the Caduceus DNA language model.

The library behind the Snakemake workflow: genome and variant I/O, sequence windows, the
Caduceus model, the embedding driver, evaluation and reporting. It knows nothing about Snakemake.
"""

__version__ = "0.1.0"


def score_variants(*args, **kwargs):
    """Score a VCF/table of SNVs with one or more checkpoints; see :func:`caduceus_vep.api.score_variants`."""
    from caduceus_vep.api import score_variants as run

    return run(*args, **kwargs)
