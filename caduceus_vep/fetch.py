"""Download the workflow's inputs (variant table, genome, annotation) robustly, and prepare the genome.

Design, and why:

* **Never write into the destination directly.** Bytes stream into ``<dest>.part`` and only a
  complete, verified file is renamed onto ``<dest>`` (``os.replace`` in the same folder is atomic).
  Snakemake treats an existing output as done, so a killed job must never leave a half-written
  ``dest`` behind; a stray ``.part`` is harmless because no rule names it as an output.
* **Resume.** hg38.fa.gz is about 938 MB; a dropped connection or a killed job should not cost the
  whole transfer again. The ``.part`` name is deterministic (not a random temp name) precisely so
  that a later attempt, in this call or in a later run, can find it and ask for the rest with
  ``Range: bytes=N-``. Servers that ignore ``Range`` (reply 200) are handled by restarting from zero.
* **Retries** with exponential backoff on transient failures only (connection errors, timeouts,
  short reads, 5xx, 429). A 404 or 403 will not fix itself, so it fails at once with a message that
  names the URL and the status.
* **Checksums are always recorded**, even when none is pinned: the digest and size of what was
  actually used go into a provenance JSON, so a result can be traced to the exact bytes (upstream
  files such as a Hugging Face ``main`` branch or UCSC's hg38.fa.gz can change under the same URL).
  When a checksum is pinned it is enforced, and a mismatch deletes the ``.part``.

Only the standard library is used for the transfer (``urllib``), so downloading needs nothing the
workflow does not already have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from caduceus_vep import __version__
from caduceus_vep.atomic import atomic_path, write_text_atomic
from caduceus_vep.provenance import sha256_file

__all__ = [
    "ChecksumError",
    "DownloadError",
    "DownloadRecord",
    "FastaPrepError",
    "download",
    "prepare_fasta",
    "sha256_file",
    "write_download_provenance",
]

USER_AGENT = f"caduceus-vep/{__version__}"
# Hosts that get the optional HF_TOKEN; never sent elsewhere (and never across redirects, see below).
_HF_HOSTS = ("huggingface.co", "hf.co")
_MAX_BACKOFF_S = 60.0
# A server that keeps answering with an unusable range would otherwise loop forever.
_MAX_RESTARTS = 3
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)
# Errors raised while talking to the server that a new attempt may cure. Local disk errors
# (e.g. ENOSPC) are plain OSErrors and deliberately not in this list.
_TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)

Progress = Callable[[int, "int | None"], Any]


class DownloadError(RuntimeError):
    """A download failed for good (a client error, or transient errors beyond the retry budget)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the pinned sha256."""


class FastaPrepError(RuntimeError):
    """A downloaded genome could not be turned into an indexed plain FASTA."""


@dataclasses.dataclass(frozen=True)
class DownloadRecord:
    """What was fetched, from where, and the digest of the bytes actually written."""

    source: str
    path: str
    sha256: str
    size_bytes: int
    http_status: int | None
    resumed: bool
    attempts: int
    finished_utc: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Retry(Exception):
    """Internal: this attempt failed in a way another attempt may cure."""


class _Restart(Exception):
    """Internal: the .part cannot be continued; start again from byte zero."""


# --------------------------------------------------------------------------- public helpers


def write_download_provenance(record: DownloadRecord, path: str | os.PathLike[str]) -> None:
    """Write ``record`` as JSON, atomically (a provenance file is itself a workflow output)."""
    write_text_atomic(path, json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n")


def download(
    source: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    retries: int = 4,
    timeout: float = 60.0,
    backoff: float = 1.0,
    chunk_size: int = 1 << 20,
    progress: Progress | None = None,
) -> DownloadRecord:
    """Fetch ``source`` to ``dest`` via ``dest.part``; verify, rename, and describe the result.

    ``source`` is an http(s) URL, a ``file://`` URL or a local path (a mirror or a pre-fetched
    file; it is copied with the same checks). ``retries`` is the number of extra attempts after
    transient failures; the wait before retry k is ``backoff * 2**(k-1)`` seconds (capped at 60).
    ``progress(done_bytes, total_bytes_or_None)`` is called after every chunk.
    Raises :class:`DownloadError` (or its subclass :class:`ChecksumError`).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    expected = sha256.strip().lower() if sha256 else None
    local = _local_source(source)

    if local is not None:
        digest, size = _copy_local(local, part, chunk_size, progress)
        status, resumed, attempts = None, False, 1
    else:
        digest, size, status, resumed, attempts = _http_fetch(
            source, part, retries=retries, timeout=timeout, backoff=backoff,
            chunk_size=chunk_size, progress=progress,
        )
        if expected and digest != expected and resumed:
            # The kept .part may be from an older version of the file at this URL: resuming glued
            # two different files together. One clean download from zero settles which it is.
            part.unlink(missing_ok=True)
            digest, size, status, resumed, more = _http_fetch(
                source, part, retries=retries, timeout=timeout, backoff=backoff,
                chunk_size=chunk_size, progress=progress,
            )
            attempts += more

    if expected and digest != expected:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"sha256 mismatch for {source}: expected {expected}, got {digest} "
            f"({size} bytes). The download is corrupt or the pinned checksum in your config is "
            "wrong (e.g. the upstream file changed); the partial file was deleted."
        )
    os.replace(part, dest)
    return DownloadRecord(
        source=source,
        path=str(dest),
        sha256=digest,
        size_bytes=size,
        http_status=status,
        resumed=resumed,
        attempts=attempts,
        finished_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


# --------------------------------------------------------------------------- local sources


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _local_source(source: str) -> Path | None:
    """The file a ``file://`` URL or bare path names; None for http(s)."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise DownloadError(f"file:// URL with a remote host is not supported: {source}")
        return Path(urllib.request.url2pathname(parsed.path))
    # A Windows drive letter parses as a one-letter scheme; anything longer is a typo'd scheme.
    if parsed.scheme and len(parsed.scheme) > 1:
        raise DownloadError(f"unsupported URL scheme {parsed.scheme!r} in {source}")
    return Path(source).expanduser()


def _copy_local(src: Path, part: Path, chunk_size: int, progress: Progress | None) -> tuple[str, int]:
    """Streamed copy into ``part`` from zero (local copies are fast; no resume needed)."""
    if not src.is_file():
        raise DownloadError(f"local source {src} does not exist or is not a file")
    total = src.stat().st_size
    hasher, done = hashlib.sha256(), 0
    with src.open("rb") as fin, part.open("wb") as fout:
        while chunk := fin.read(chunk_size):
            fout.write(chunk)
            hasher.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return hasher.hexdigest(), done


# --------------------------------------------------------------------------- HTTP


class _PartState:
    """The ``.part`` file and the running hash of its bytes, shared across attempts."""

    def __init__(self, path: Path, chunk_size: int) -> None:
        self.path = path
        # Hash what an earlier run left behind once, then keep hashing incrementally.
        self.hasher = _hash_file(path, chunk_size) if path.exists() else hashlib.sha256()
        # True while the .part holds bytes from an earlier attempt or run that were continued.
        self.resumed = False

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def restart(self) -> None:
        """Forget the .part: the next bytes are byte zero of the file."""
        self.path.unlink(missing_ok=True)
        self.hasher, self.resumed = hashlib.sha256(), False


def _http_fetch(
    url: str, part: Path, *, retries: int, timeout: float, backoff: float,
    chunk_size: int, progress: Progress | None,
) -> tuple[str, int, int | None, bool, int]:
    """Fill ``part`` with the whole remote file. Returns (sha256, size, status, resumed, attempts)."""
    state = _PartState(part, chunk_size)
    attempts = failures = restarts = 0
    while True:
        attempts += 1
        try:
            status = _attempt(url, state, timeout, chunk_size, progress)
            return state.hasher.hexdigest(), state.size, status, state.resumed, attempts
        except _Restart:
            restarts += 1
            state.restart()
            if restarts > _MAX_RESTARTS:
                raise DownloadError(f"server keeps sending unusable byte ranges for {url}") from None
        except _Retry as exc:
            failures += 1
            if failures > retries:
                raise DownloadError(
                    f"giving up on {url} after {attempts} attempt(s): {exc}. "
                    f"The partial file {part} is kept; re-running resumes from it."
                ) from exc.__cause__
            time.sleep(min(backoff * 2 ** (failures - 1), _MAX_BACKOFF_S))


def _attempt(
    url: str, state: _PartState, timeout: float, chunk_size: int, progress: Progress | None,
) -> int:
    """One request: append to (or restart) the .part. Returns the HTTP status."""
    offset = state.size
    request = _build_request(url, offset)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        return _handle_http_error(exc, url, state, offset, timeout)
    except _TRANSIENT as exc:
        raise _Retry(f"{type(exc).__name__}: {exc}") from exc
    with response:
        start, total = _plan_body(response, offset)
        if start == 0:
            state.restart()  # a 200 carries the whole file, even if we asked for a range
        else:
            state.resumed = True
        _stream_body(response, state, total, chunk_size, progress)
        return response.status


def _build_request(url: str, offset: int) -> urllib.request.Request:
    request = urllib.request.Request(url, headers={
        "User-Agent": USER_AGENT,
        # No transparent compression: Content-Length and byte ranges must refer to the file itself.
        "Accept-Encoding": "identity",
    })
    if offset > 0:
        request.add_header("Range", f"bytes={offset}-")
    token = os.environ.get("HF_TOKEN", "").strip()
    if token and _is_hf_host(urllib.parse.urlparse(url).hostname or ""):
        # Unredirected: HF resolve URLs redirect to a CDN with a signed URL, which must not get it.
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    return request


def _is_hf_host(host: str) -> bool:
    host = host.lower()
    return any(host == h or host.endswith("." + h) for h in _HF_HOSTS)


def _handle_http_error(
    exc: urllib.error.HTTPError, url: str, state: _PartState, offset: int, timeout: float,
) -> int:
    """Map an error status to retry, restart, done (416 on a complete .part) or a hard failure."""
    with exc:
        code, reason = exc.code, exc.reason
        if code == 416 and offset > 0:
            remote = _unsatisfied_total(exc) or _remote_size(url, timeout)
            if remote == offset:
                state.resumed = True
                return code  # the .part from an earlier run already holds the whole file
            raise _Restart()
        if code == 429 or code >= 500:
            raise _Retry(f"HTTP {code} {reason}")
    raise DownloadError(
        f"HTTP {code} {reason} for {url} — check the URL or the pinned revision in your config"
        + (" (or set HF_TOKEN for a gated/private Hugging Face repository)" if code in (401, 403) else "")
    )


def _unsatisfied_total(exc: urllib.error.HTTPError) -> int | None:
    match = _UNSATISFIED_RANGE.search(exc.headers.get("Content-Range", "") if exc.headers else "")
    return int(match.group(1)) if match else None


def _remote_size(url: str, timeout: float) -> int | None:
    """Content-Length from a HEAD request, or None if the server will not say."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": USER_AGENT})
    with contextlib.suppress(*_TRANSIENT, ValueError):
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            return int(length) if length is not None else None
    return None


def _plan_body(response: http.client.HTTPResponse, offset: int) -> tuple[int, int | None]:
    """Where the body starts in the file and the file's total size (None if unknown)."""
    length = response.headers.get("Content-Length")
    if response.status == 206:
        match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != offset:
            raise _Restart()  # a range we did not ask for cannot be appended safely
        total = match.group(3)
        return offset, (int(total) if total != "*" else None)
    return 0, (int(length) if length is not None else None)


def _stream_body(
    response: http.client.HTTPResponse, state: _PartState, total: int | None,
    chunk_size: int, progress: Progress | None,
) -> None:
    """Append the body to the .part; raise _Retry if it ends short of ``total``."""
    done = state.size
    with state.path.open("ab") as fout:
        while True:
            try:
                chunk = response.read(chunk_size)
            except _TRANSIENT as exc:
                raise _Retry(f"connection lost after {done} bytes: {type(exc).__name__}: {exc}") from exc
            if not chunk:
                break
            fout.write(chunk)
            state.hasher.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    # http.client returns b"" (no error) when the peer closes early, so count bytes ourselves.
    if total is not None and done < total:
        raise _Retry(f"incomplete read: got {done} of {total} bytes")
    if total is not None and done > total:
        raise _Restart()


def _hash_file(path: Path, chunk_size: int = 1 << 20) -> Any:
    hasher = hashlib.sha256()
    with path.open("rb") as fin:
        while chunk := fin.read(chunk_size):
            hasher.update(chunk)
    return hasher


# --------------------------------------------------------------------------- genome preparation

_GZIP_MAGIC = b"\x1f\x8b"
_COPY_BUFFER = 4 << 20


def prepare_fasta(source_path: str | os.PathLike[str], dest_fasta: str | os.PathLike[str]) -> Path:
    """Write ``source_path`` (gzip, bgzip or plain FASTA) as plain FASTA at ``dest_fasta`` + ``.fai``.

    Plain FASTA because random access by samtools/pyfaidx is simplest and fastest on it (a plain
    gzip is not seekable at all). Decompression streams: hg38 is about 3 GB uncompressed.
    Both files appear only when complete: the index is built on the temporary FASTA, any old
    ``.fai`` is removed first, the FASTA is renamed into place, and then its index.
    """
    src, dest = Path(source_path), Path(dest_fasta)
    if src.resolve() == dest.resolve():
        raise ValueError(f"prepare_fasta: source and destination are the same file: {src}")
    if not src.is_file():
        raise FastaPrepError(f"genome file {src} does not exist")
    fai = dest.with_name(dest.name + ".fai")
    # An old index must never sit beside a new FASTA, not even for a moment.
    fai.unlink(missing_ok=True)
    tmp_fai: Path | None = None
    try:
        with atomic_path(dest) as tmp:
            _decompress_fasta(src, tmp)
            tmp_fai = _index_fasta(tmp, src)
        os.replace(tmp_fai, fai)
    finally:
        if tmp_fai is not None:
            tmp_fai.unlink(missing_ok=True)
    return dest


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fin:
        return fin.read(2) == _GZIP_MAGIC


def _decompress_fasta(src: Path, out: Path) -> None:
    """Stream ``src`` (decompressing if gzip/bgzip: bgzip is multi-member gzip) into ``out``."""
    opener = gzip.open if _is_gzip(src) else open
    try:
        with opener(src, "rb") as fin, out.open("wb") as fout:
            _copy_checked(fin, fout, src)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise FastaPrepError(
            f"{src}: truncated or corrupt gzip ({exc}); delete it and download it again"
        ) from exc


def _copy_checked(fin: BinaryIO, fout: BinaryIO, src: Path) -> None:
    head = fin.read(_COPY_BUFFER)
    if not head.startswith(b">"):
        what = "is empty" if not head else f"does not start with '>' (starts with {head[:20]!r})"
        raise FastaPrepError(f"{src} is not a FASTA file: its content {what}")
    fout.write(head)
    shutil.copyfileobj(fin, fout, _COPY_BUFFER)


def _index_fasta(fasta: Path, src: Path) -> Path:
    """Build ``<fasta>.fai`` with samtools (via pysam); returns its path."""
    import pysam  # local import: only genome preparation needs it

    fai = fasta.with_name(fasta.name + ".fai")
    try:
        pysam.faidx(str(fasta))
    except pysam.utils.SamtoolsError as exc:
        fai.unlink(missing_ok=True)
        raise FastaPrepError(f"could not index the FASTA decompressed from {src}: {exc}") from exc
    if not fai.is_file():
        raise FastaPrepError(f"samtools faidx wrote no index for the FASTA from {src}")
    return fai
