"""Variant-effect prediction with the Caduceus DNA language model.

The library behind the Snakemake workflow: genome and variant I/O, sequence windows, the
Caduceus model, the embedding driver, evaluation and reporting. It knows nothing about Snakemake.
"""

__version__ = "0.1.0"
