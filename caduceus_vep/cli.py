"""``caduceus-vep``: the workflow's stages as commands, for use outside Snakemake.

    caduceus-vep variants All_Tissues.csv --out variants.parquet --skipped skipped.tsv
    caduceus-vep windows variants.parquet genome.fa --context 1536 --pooling 1536 --out windows.parquet --skipped s.tsv
    caduceus-vep embed windows.parquet genome.fa --model PATH_OR_REPO --rc-rule ps --out features.parquet
    caduceus-vep fetch URL DEST [--sha256 HEX]
    caduceus-vep make-demo resources/demo
    caduceus-vep score my.vcf genome.fa --classifiers results/demo/evaluate/*.sound_models.joblib --out scored
"""

from __future__ import annotations

import argparse
import sys

from caduceus_vep import stages


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="caduceus-vep", description="Variant-effect prediction with Caduceus.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("variants", help="normalise an eQTL table or VCF")
    p.add_argument("source")
    p.add_argument("--format", default="auto", choices=["auto", "eqtl_table", "vcf"])
    p.add_argument("--label-info")
    p.add_argument("--distance-info")
    p.add_argument("--out", required=True)
    p.add_argument("--skipped", required=True)

    p = sub.add_parser("windows", help="check variants against the genome, record windows")
    p.add_argument("variants")
    p.add_argument("fasta")
    p.add_argument("--context", type=int, default=1536)
    p.add_argument("--pooling", type=int, default=1536)
    p.add_argument("--max-n-fraction", type=float, default=0.005)
    p.add_argument("--out", required=True)
    p.add_argument("--skipped", required=True)

    p = sub.add_parser("embed", help="pooled Caduceus features per variant")
    p.add_argument("windows")
    p.add_argument("fasta")
    p.add_argument("--model", required=True, help="checkpoint folder or Hugging Face repo id")
    p.add_argument("--revision")
    p.add_argument("--name", default="model")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--autocast-dtype", default="bfloat16")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)

    p = sub.add_parser("fetch", help="download a file with resume, retries and checksum")
    p.add_argument("source")
    p.add_argument("dest")
    p.add_argument("--sha256")

    p = sub.add_parser("score", help="score a VCF with saved sound-protocol classifiers (+ zero-shot scores)")
    p.add_argument("vcf")
    p.add_argument("fasta")
    p.add_argument("--classifiers", nargs="+", required=True, help="<model>.sound_models.joblib files (with their .json sidecars)")
    p.add_argument("--out", required=True, help="output prefix: <out>.scores.tsv, .scored.vcf, .skipped.tsv, .auroc.tsv")
    p.add_argument("--label-info", help="INFO field with 0/1 labels (then AUROCs are reported too)")
    p.add_argument("--distance-info", help="INFO field with the distance to the nearest TSS (selects the bucket model)")
    p.add_argument("--tissue", default="NA")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bootstrap", type=int, default=1000)

    p = sub.add_parser("make-demo", help="regenerate the bundled demo data")
    p.add_argument("folder", nargs="?", default="resources/demo")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stages.configure_logging(None)
    if args.command == "variants":
        options = {"format": args.format, "label_info": args.label_info, "distance_info": args.distance_info}
        stages.variants_stage(args.source, options, args.out, args.skipped)
    elif args.command == "windows":
        spec = {"context_length": args.context, "pooling_window": args.pooling, "max_n_fraction": args.max_n_fraction}
        stages.windows_stage(args.variants, args.fasta, spec, args.out, args.skipped)
    elif args.command == "embed":
        model = {"name": args.name, "path": args.model, "revision": args.revision}
        settings = {"batch_size": args.batch_size, "device": args.device, "autocast_dtype": args.autocast_dtype}
        stages.embed_stage(args.windows, args.fasta, model, settings, args.out, threads=args.threads)
    elif args.command == "fetch":
        from caduceus_vep import fetch

        record = fetch.download(args.source, args.dest, sha256=args.sha256)
        fetch.write_download_provenance(record, args.dest + ".download.json")
        print(record.sha256)
    elif args.command == "score":
        outputs = {k: f"{args.out}.{suffix}" for k, suffix in
                   (("tsv", "scores.tsv"), ("vcf", "scored.vcf"), ("skipped", "skipped.tsv"), ("auroc", "auroc.tsv"))}
        options = {"label_info": args.label_info, "distance_info": args.distance_info, "tissue": args.tissue}
        device = {"batch_size": args.batch_size, "device": args.device}
        stages.score_stage(args.vcf, args.fasta, args.classifiers, options, outputs, f"{args.out}.work",
                           embed_settings=device, zero_shot_settings=device, threads=args.threads, bootstrap=args.bootstrap)
    elif args.command == "make-demo":
        from caduceus_vep import demo

        demo.generate(args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
