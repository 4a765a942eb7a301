"""Provenance: what produced a result (inputs and checksums, models, config, package versions)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from caduceus_vep.atomic import write_text_atomic

TRACKED_PACKAGES = (
    "caduceus-vep", "torch", "snakemake", "pandas", "numpy", "scikit-learn", "pysam", "pyfaidx",
    "pyarrow", "safetensors", "huggingface-hub", "matplotlib", "mamba-ssm",
)


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Streamed SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: str | os.PathLike[str]) -> dict:
    """Path, size and SHA-256 of an input file."""
    p = Path(path)
    return {"path": str(p), "size_bytes": p.stat().st_size, "sha256": sha256_file(p)}


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that shape the results (None = not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(directory: str | os.PathLike[str]) -> str | None:
    """The workflow's git commit (with ``-dirty`` when the tree has changes), if it is a checkout."""
    try:
        commit = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def environment() -> dict:
    """Python, platform and package versions."""
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": package_versions()}


def write_json(path: str | os.PathLike[str], payload: dict) -> None:
    """Pretty, key-sorted JSON written atomically."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def download_records(inputs: dict[str, str | os.PathLike[str]]) -> dict:
    """Download provenance written beside fetched inputs (``<file>.download.json``), where present."""
    records = {}
    for name, p in inputs.items():
        candidate = Path(str(p) + ".download.json")
        if candidate.exists():
            records[name] = json.loads(candidate.read_text())
    return records
