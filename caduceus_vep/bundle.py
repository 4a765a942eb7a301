"""Classifier bundles (``.cvep.npz``): the sound protocol's fitted bucket classifiers, pickle-free.

A bundle is a NumPy ``.npz`` archive holding only numeric arrays and one JSON document, read with
``numpy.load(allow_pickle=False)``: loading a bundle from another run or another user can never run
code (an object array, i.e. a pickle, is refused). Per TSS-distance bucket ``k`` it stores the RBF
SVM as plain arrays (``b<k>.scaler_mean``, ``b<k>.scaler_scale``, ``b<k>.support_vectors``,
``b<k>.dual_coef``: see :class:`caduceus_vep.sound.BucketModel`), and ``sidecar`` (UTF-8 JSON as a
uint8 array) records what the classifiers need to be applied correctly: the model (name, weights
SHA-256, source), the window spec, the feature layout (feature kind, width, tissue one-hot order),
the buckets with their hyper-parameters and Platt coefficients, training-data checksums, library
versions, and a SHA-256 over every array so that a damaged file is refused, not half-used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caduceus_vep.atomic import atomic_path
from caduceus_vep.evaluate import Bucket
from caduceus_vep.provenance import package_versions
from caduceus_vep.sound import BucketModel, SoundResult

FORMAT = "caduceus-vep classifier bundle"
FORMAT_VERSION = 2
ARRAY_FIELDS = ("scaler_mean", "scaler_scale", "support_vectors", "dual_coef")
PathLike = str | os.PathLike[str]


class BundleError(ValueError):
    """A bundle that cannot be used: unreadable, tampered with, or made for other features."""


@dataclass
class Bundle:
    """A loaded bundle: bucket models by name, tissue one-hot order, feature kind and the sidecar."""

    models: dict[str, BucketModel]
    tissues: list[str]
    feature_kind: str
    sidecar: dict

    @property
    def model_name(self) -> str:
        return self.sidecar["model"]["name"]


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{a.dtype.str}:{a.shape}\n".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def save_bundle(result: SoundResult, path: PathLike, meta: dict) -> dict:
    """Write the fitted bucket models of ``result`` as a bundle (atomically); returns the sidecar.

    ``meta`` carries ``model`` (with ``weights_sha256``), ``windows`` (the spec), ``feature_width``,
    ``protocol``, ``settings`` and ``training_data``.
    """
    arrays: dict[str, np.ndarray] = {}
    buckets = []
    for k, (name, m) in enumerate(result.models.items()):
        for field_name in ARRAY_FIELDS:
            arrays[f"b{k}.{field_name}"] = np.asarray(getattr(m, field_name), dtype=np.float64)
        buckets.append({"index": k, "name": name, "low": m.bucket.low, "high": m.bucket.high, "closed_high": m.bucket.closed_high,
                        "C": m.C, "gamma_factor": m.gamma_factor, "gamma": m.gamma, "intercept": float(m.intercept),
                        "platt": [float(v) for v in m.platt], "train_sha256": m.train_sha256,
                        "n_support": int(len(m.dual_coef))})
    sidecar = {
        "format": FORMAT, "format_version": FORMAT_VERSION, **meta,
        "feature_layout": {"embedding": f"concat(ref_{result.feature_kind}, alt_{result.feature_kind})",
                           "feature_kind": result.feature_kind, "feature_width": meta.get("feature_width"),
                           "tissue_onehot": list(result.tissues)},
        "buckets": buckets, "libraries": package_versions(("caduceus-vep", "numpy", "scikit-learn")),
        "arrays_sha256": _arrays_digest(arrays),
    }
    arrays["sidecar"] = np.frombuffer(json.dumps(sidecar, sort_keys=True, default=str).encode(), dtype=np.uint8)
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return sidecar


def load_bundle(path: PathLike) -> Bundle:
    """Read and verify a bundle; never unpickles (object arrays are refused)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise BundleError(f"{path}: not a readable classifier bundle ({err}); bundles hold numeric arrays only "
                          "(object arrays / pickles are refused)") from None
    if "sidecar" not in arrays:
        raise BundleError(f"{path}: no sidecar in the bundle")
    try:
        sidecar = json.loads(arrays.pop("sidecar").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{path}: the bundle's sidecar is not JSON ({err})") from None
    if sidecar.get("format") != FORMAT or sidecar.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: not a {FORMAT} of version {FORMAT_VERSION} "
                          f"(format {sidecar.get('format')!r}, version {sidecar.get('format_version')!r})")
    if _arrays_digest(arrays) != sidecar.get("arrays_sha256"):
        raise BundleError(f"{path}: the arrays do not match the checksum in the sidecar (damaged or edited file)")
    models = {}
    for entry in sidecar["buckets"]:
        k = entry["index"]
        fields = {f: arrays[f"b{k}.{f}"] for f in ARRAY_FIELDS}
        models[entry["name"]] = BucketModel(
            bucket=Bucket(entry["name"], entry["low"], entry["high"], closed_high=entry["closed_high"]), C=entry["C"],
            gamma_factor=entry["gamma_factor"], gamma=entry["gamma"], platt=tuple(entry["platt"]),
            train_sha256=entry["train_sha256"], intercept=entry["intercept"], **fields)
    layout = sidecar["feature_layout"]
    return Bundle(models=models, tissues=list(layout["tissue_onehot"]), feature_kind=layout["feature_kind"], sidecar=sidecar)


def check_bundle(bundle: Bundle, path: PathLike, *, model: str, weights_sha256: str | None, window_spec: dict,
                 feature_width: int) -> None:
    """Refuse a bundle made for another model, weights, window spec or feature width, saying which."""
    side = bundle.sidecar
    problems = []
    if side["model"]["name"] != model:
        problems.append(f"it was trained for model {side['model']['name']!r}, not {model!r}")
    if weights_sha256 and side["model"].get("weights_sha256") and side["model"]["weights_sha256"] != weights_sha256:
        problems.append(f"its model weights (sha256 {side['model']['weights_sha256'][:12]}...) differ from this run's "
                        f"({weights_sha256[:12]}...)")
    trained = {k: side["windows"].get(k) for k in ("context_length", "pooling_window")}
    here = {k: window_spec.get(k) for k in ("context_length", "pooling_window")}
    if trained != here:
        problems.append(f"it was trained on windows {trained}, this dataset has {here}")
    width = side["feature_layout"].get("feature_width")
    if width is not None and feature_width and width != feature_width:
        problems.append(f"its features are {width} wide per sequence, this model gives {feature_width}")
    if problems:
        raise BundleError(f"{path} cannot score this dataset: " + "; ".join(problems) + ". Use bundles trained with the "
                          "same model and windows (or retrain: datasets.<name>.evaluate: true on a labelled set).")
