"""``caduceus-vep``: score your own variants in one command, and the workflow's stages as commands.

    caduceus-vep score my.vcf.gz --genome hg38.fa --model kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16 \\
        [--gtf gencode.gtf.gz] [--classifiers results/paper/eqtl/classifiers/caduceus_ps.cvep.npz] --out my_scores
    caduceus-vep variants All_Tissues.csv --out variants.parquet --skipped skipped.tsv
    caduceus-vep windows variants.parquet genome.fa --context 1536 --pooling 1536 --out windows.parquet --skipped s.tsv
    caduceus-vep fetch URL DEST [--sha256 HEX]
    caduceus-vep make-demo resources/demo
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

from caduceus_vep import stages


def _version() -> str:
    try:
        return metadata.version("caduceus-vep")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="caduceus-vep", description="Variant-effect prediction with the Caduceus DNA language model.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("score", help="score a VCF/BCF/TSV/parquet of SNVs with one or more checkpoints (zero-shot by default)",
                       description="Zero-shot scores (MLM LLR unmasked and SNP-masked, embedding L2/cosine) of every SNV, plus "
                                   "classifier probabilities when --classifiers is given. Writes OUT/scores/<name>.scored.vcf.gz "
                                   "(+ .tbi), .scores.parquet/.tsv, .skipped.tsv, .auroc.tsv (when labelled), .provenance.json.")
    p.add_argument("variants", help="VCF / VCF.gz / BCF, or a TSV/CSV/parquet table with chrom,pos,ref,alt")
    p.add_argument("--genome", required=True, help="reference FASTA of the variants' build (plain or bgzipped; indexed if needed)")
    p.add_argument("--model", action="append", required=True, metavar="[NAME=]PATH_OR_REPO",
                   help="checkpoint folder or Hugging Face repo id; repeat for several models; NAME must match a bundle's model name")
    p.add_argument("--revision", help="Hub revision (commit, tag or branch) for every --model repo id")
    p.add_argument("--gtf", help="GENCODE/Ensembl GTF for the distance to the nearest TSS (selects the classifier bucket)")
    p.add_argument("--classifiers", nargs="+", metavar="BUNDLE", help="classifier bundles (.cvep.npz) from a workflow run")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", default="variants", help="dataset name used in the output file names (default: variants)")
    p.add_argument("--context", type=int, help="context length in bp (default: the schema's, 131,072)")
    p.add_argument("--pooling", type=int, help="pooling window in tokens (default: the schema's, 1,536)")
    p.add_argument("--label-info", help="VCF INFO field (or --label-column for tables) with 0/1 labels: then AUROCs are reported")
    p.add_argument("--label-column", help="table column with 0/1 labels")
    p.add_argument("--distance-info", help="VCF INFO field with the distance to the nearest TSS (instead of --gtf)")
    p.add_argument("--tissue", help="tissue for every record (default NA: tissue-marginal probabilities)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the model runs (default auto)")
    p.add_argument("--batch-size", type=int, help="variants per model call")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")

    p = sub.add_parser("variants", help="normalise an eQTL table, a variant table or a VCF")
    p.add_argument("source", help="input file")
    p.add_argument("--format", default="auto", choices=["auto", "eqtl_table", "table", "vcf"], help="input format (default auto)")
    p.add_argument("--label-info", help="VCF INFO field with 0/1 labels")
    p.add_argument("--distance-info", help="VCF INFO field with the TSS distance")
    p.add_argument("--gtf", help="GTF to compute missing TSS distances")
    p.add_argument("--out", required=True, help="variants parquet to write")
    p.add_argument("--skipped", required=True, help="skipped-records TSV to write")

    p = sub.add_parser("windows", help="check variants against the genome, record windows")
    p.add_argument("variants", help="variants parquet (from `variants`)")
    p.add_argument("fasta", help="reference FASTA")
    p.add_argument("--context", type=int, required=True, help="context length in bp")
    p.add_argument("--pooling", type=int, required=True, help="pooling window in tokens")
    p.add_argument("--out", required=True, help="windows parquet to write")
    p.add_argument("--skipped", required=True, help="skipped-records TSV to write")

    p = sub.add_parser("fetch", help="download a file with resume, retries and checksum")
    p.add_argument("source", help="http(s) or file:// URL, or a local path")
    p.add_argument("dest", help="where to write it")
    p.add_argument("--sha256", help="expected SHA-256 (hex)")

    p = sub.add_parser("make-demo", help="regenerate the bundled demo data")
    p.add_argument("folder", nargs="?", default="resources/demo", help="target folder (default resources/demo)")
    return parser


def _score(args: argparse.Namespace) -> None:
    from caduceus_vep.api import model_entry, score_variants

    entries = [{**model_entry(m), "revision": args.revision} if args.revision else model_entry(m) for m in args.model]
    dataset = {k: v for k, v in {"label_info": args.label_info, "label_column": args.label_column, "distance_info": args.distance_info,
                                 "tissue": args.tissue}.items() if v is not None}
    windows = {k: v for k, v in {"context_length": args.context, "pooling_window": args.pooling}.items() if v is not None}
    run = {k: v for k, v in {"device": args.device, "batch_size": args.batch_size}.items() if v is not None}
    table = score_variants(args.variants, args.genome, entries, out_dir=args.out, gtf=args.gtf, classifiers=args.classifiers,
                           name=args.name, dataset=dataset, windows=windows, embed=run, zero_shot=run, threads=args.threads)
    print(f"{len(table)} variant rows scored; results in {args.out}/scores/{args.name}.* (skipped records: "
          f"{args.out}/scores/{args.name}.skipped.tsv)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stages.configure_logging(None)
    if args.command == "score":
        stages.run_logged(None, _score, args)
    elif args.command == "variants":
        from caduceus_vep.settings import dataset_defaults

        options = {**dataset_defaults(), "format": args.format, "label_info": args.label_info, "distance_info": args.distance_info}
        stages.run_logged(None, stages.variants_stage, source=args.source, options=options, out_variants=args.out,
                          out_skipped=args.skipped, tss=args.gtf)
    elif args.command == "windows":
        spec = {"context_length": args.context, "pooling_window": args.pooling}
        stages.run_logged(None, stages.windows_stage, variants=args.variants, fasta=args.fasta, spec=spec, out_windows=args.out,
                          out_skipped=args.skipped)
    elif args.command == "fetch":
        from caduceus_vep import fetch

        record = fetch.download(args.source, args.dest, sha256=args.sha256)
        fetch.write_download_provenance(record, args.dest + ".download.json")
        print(record.sha256)
    elif args.command == "make-demo":
        from caduceus_vep import demo

        demo.generate(args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
