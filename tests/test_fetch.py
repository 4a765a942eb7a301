"""Tests for caduceus_vep.fetch against a local threaded HTTP server (no internet needed)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyfaidx
import pysam
import pytest

from caduceus_vep import __version__, fetch
from caduceus_vep.fetch import (
    ChecksumError,
    DownloadError,
    DownloadRecord,
    FastaPrepError,
    download,
    prepare_fasta,
    sha256_file,
    write_download_provenance,
)

# 300 kB of non-repeating bytes: several chunks at the small chunk size used below.
PAYLOAD = os.urandom(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
CHUNK = 16 * 1024


# --------------------------------------------------------------------------- test server


@dataclass
class Served:
    """One file on the test server and how the server misbehaves for it."""

    data: bytes = b""
    mode: str = "range"  # range | ignore_range | drop | 404 | 500_once | 503_always | slow_once | bad_range
    drop_after: int = 0  # bytes sent before the connection is cut on the first GET ("drop")
    location: str = ""  # target of a 302 ("redirect"), like HF resolve URLs pointing at a CDN
    gets: int = 0


@dataclass
class Server:
    base: str
    files: dict[str, Served]
    log: list[dict] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def add(self, name: str, data: bytes = PAYLOAD, **kw) -> str:
        self.files["/" + name] = Served(data=data, **kw)
        return self.url(name)

    def requests(self, name: str, method: str = "GET") -> list[dict]:
        return [r for r in self.log if r["path"] == "/" + name and r["method"] == method]


def _make_handler(server_state: Server):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def do_HEAD(self):
            self._serve(head=True)

        def do_GET(self):
            self._serve(head=False)

        def _serve(self, head: bool) -> None:
            server_state.log.append({
                "method": self.command, "path": self.path, "range": self.headers.get("Range"),
                "user_agent": self.headers.get("User-Agent"),
                "authorization": self.headers.get("Authorization"),
            })
            served = server_state.files.get(self.path)
            if served is None or served.mode == "404":
                self.send_error(404, "Not Found")
                return
            if served.mode == "redirect":
                self.send_response(302)
                self.send_header("Location", served.location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if not head:
                served.gets += 1
            first = served.gets == 1
            if served.mode == "503_always" or (served.mode == "500_once" and first and not head):
                self.send_error(500 if served.mode == "500_once" else 503)
                return
            if served.mode == "slow_once" and first and not head:
                time.sleep(0.6)  # longer than the client's timeout in the test
            data, status, headers = served.data, 200, {}
            rng = self.headers.get("Range")
            if rng and served.mode != "ignore_range":
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if served.mode == "bad_range":
                    start = 0  # claims a range that does not start where we asked
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                data = data[start:]
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if head:
                return
            if served.mode == "drop" and first:
                self.wfile.write(data[: served.drop_after])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)  # a dropped connection mid-body
                self.close_connection = True
                return
            self.wfile.write(data)

    return Handler


@pytest.fixture()
def server():
    state = Server(base="", files={})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def _get(url: str, dest: Path, **kw) -> DownloadRecord:
    kw.setdefault("backoff", 0)
    kw.setdefault("timeout", 5)
    kw.setdefault("chunk_size", CHUNK)
    return download(url, dest, **kw)


def _parts(dest: Path) -> list[Path]:
    """Every partial file (and sidecar) of downloads into ``dest``."""
    return sorted(p for p in dest.parent.glob(dest.name + ".*") if ".part" in p.name)


def _leave_part(dest: Path, url: str, data: bytes, sha256: str | None = None, **validators) -> Path:
    """A partial file as a killed run of ``download(url, dest, sha256=...)`` leaves it (bytes + sidecar)."""
    part = fetch.part_path(dest, url, sha256)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data)
    meta = {"url": url, "sha256": sha256.lower() if sha256 else None, "etag": None, "last_modified": None, "total": None}
    part.with_name(part.name + ".json").write_text(json.dumps({**meta, **validators}))
    return part


# --------------------------------------------------------------------------- downloads


def test_normal_download(server, tmp_path):
    url = server.add("All_Tissues.csv")
    dest = tmp_path / "sub" / "All_Tissues.csv"
    record = _get(url, dest, sha256=PAYLOAD_SHA.upper())  # case of the pinned digest is irrelevant
    assert dest.read_bytes() == PAYLOAD
    assert not _parts(dest)
    assert record.sha256 == PAYLOAD_SHA == sha256_file(dest)
    assert record.size_bytes == len(PAYLOAD)
    assert record.source == url and record.path == str(dest)
    assert record.http_status == 200 and record.resumed is False and record.attempts == 1
    assert record.finished_utc.endswith("+00:00")
    assert server.requests("All_Tissues.csv")[0]["user_agent"] == f"caduceus-vep/{__version__}"
    assert server.requests("All_Tissues.csv")[0]["range"] is None


def test_checksum_always_recorded_without_pin(server, tmp_path):
    record = _get(server.add("f"), tmp_path / "f")
    assert record.sha256 == PAYLOAD_SHA


def test_resume_from_part_left_by_killed_run(server, tmp_path):
    url = server.add("genome.fa.gz")
    dest = tmp_path / "genome.fa.gz"
    half = len(PAYLOAD) // 2
    _leave_part(dest, url, PAYLOAD[:half], PAYLOAD_SHA)
    record = _get(url, dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and not _parts(dest)
    assert server.requests("genome.fa.gz")[0]["range"] == f"bytes={half}-"
    assert record.resumed is True and record.http_status == 206
    assert record.sha256 == PAYLOAD_SHA  # the hash covers the old .part bytes too


def test_dropped_connection_resumes_within_one_call(server, tmp_path):
    url = server.add("big", mode="drop", drop_after=100_000)
    dest = tmp_path / "big"
    record = _get(url, dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    gets = server.requests("big")
    assert len(gets) == 2 and gets[0]["range"] is None and gets[1]["range"] == "bytes=100000-"
    assert record.attempts == 2 and record.resumed is True and record.http_status == 206


def test_dropped_connection_without_retries_keeps_part_for_next_run(server, tmp_path):
    url = server.add("big", mode="drop", drop_after=50_000)
    dest = tmp_path / "big"
    with pytest.raises(DownloadError, match="incomplete read") as info:
        _get(url, dest, retries=0)
    assert url in str(info.value)
    assert not dest.exists()
    assert fetch.part_path(dest, url).read_bytes() == PAYLOAD[:50_000]
    record = _get(url, dest)  # the "next run"
    assert dest.read_bytes() == PAYLOAD and record.resumed and record.sha256 == PAYLOAD_SHA


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    url = server.add("f", mode="ignore_range")
    dest = tmp_path / "f"
    _leave_part(dest, url, b"stale bytes that must not survive" * 100, PAYLOAD_SHA)
    record = _get(url, dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests("f")[0]["range"] is not None  # we asked; the server ignored it
    assert record.http_status == 200 and record.resumed is False and record.sha256 == PAYLOAD_SHA


def test_part_already_complete_416(server, tmp_path):
    url = server.add("f")
    dest = tmp_path / "f"
    _leave_part(dest, url, PAYLOAD, PAYLOAD_SHA)
    record = _get(url, dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and record.http_status == 416 and record.resumed


def test_part_longer_than_remote_restarts(server, tmp_path):
    url = server.add("f")
    dest = tmp_path / "f"
    _leave_part(dest, url, PAYLOAD + b"extra junk", PAYLOAD_SHA)
    record = _get(url, dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and record.resumed is False


def test_mismatched_content_range_restarts(server, tmp_path):
    url = server.add("f", mode="bad_range")  # answers any Range with a 206 from byte 0
    dest = tmp_path / "f"
    _leave_part(dest, url, PAYLOAD[:1000], PAYLOAD_SHA)
    record = _get(url, dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and record.resumed is False
    assert [r["range"] for r in server.requests("f")] == ["bytes=1000-", None]


def test_stale_part_with_pinned_checksum_redownloads(server, tmp_path):
    url = server.add("f")
    dest = tmp_path / "f"
    _leave_part(dest, url, b"X" * 1000, PAYLOAD_SHA)  # the start of an older version of the file
    record = _get(url, dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and record.resumed is False
    assert [r["range"] for r in server.requests("f")] == ["bytes=1000-", None]


def test_checksum_mismatch(server, tmp_path):
    url = server.add("f")
    dest = tmp_path / "f"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        _get(url, dest, sha256=wrong)
    message = str(info.value)
    assert url in message and wrong in message and PAYLOAD_SHA in message
    assert "corrupt" in message and "checksum" in message
    assert not dest.exists() and not _parts(dest)


def test_404_fails_fast(server, tmp_path):
    url = server.add("missing", mode="404")
    dest = tmp_path / "missing"
    with pytest.raises(DownloadError) as info:
        _get(url, dest)
    assert "404" in str(info.value) and "Not Found" in str(info.value) and url in str(info.value)
    assert not isinstance(info.value, ChecksumError)
    assert not dest.exists() and not _parts(dest)
    assert len(server.requests("missing")) == 1


def test_500_then_ok_retries(server, tmp_path):
    url = server.add("f", mode="500_once")
    dest = tmp_path / "f"
    record = _get(url, dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and record.attempts == 2
    assert len(server.requests("f")) == 2


def test_persistent_5xx_gives_up_after_retries(server, tmp_path):
    url = server.add("f", mode="503_always")
    dest = tmp_path / "f"
    with pytest.raises(DownloadError, match="503") as info:
        _get(url, dest, retries=2)
    assert "3 attempt" in str(info.value)
    assert len(server.requests("f")) == 3
    assert not dest.exists()


def test_timeout_is_retried(server, tmp_path):
    url = server.add("f", mode="slow_once")
    dest = tmp_path / "f"
    record = _get(url, dest, timeout=0.2, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and record.attempts >= 2


def test_connection_refused_is_retried_then_fails(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    with pytest.raises(DownloadError, match="after 2 attempt"):
        _get(f"http://127.0.0.1:{port}/f", tmp_path / "f", retries=1)


def test_dest_never_exists_before_the_end(server, tmp_path):
    url = server.add("f", mode="drop", drop_after=70_000)
    dest = tmp_path / "f"
    dest_seen, calls = [], []

    def progress(done, total):
        calls.append((done, total))
        dest_seen.append(dest.exists())

    _get(url, dest, progress=progress)
    assert calls and not any(dest_seen)
    assert calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert dest.exists()


def test_failure_does_not_touch_existing_dest(server, tmp_path):
    url = server.add("f")
    dest = tmp_path / "f"
    dest.write_bytes(b"old")
    with pytest.raises(ChecksumError):
        _get(url, dest, sha256="1" * 64)
    assert dest.read_bytes() == b"old"


def test_local_path_and_file_url(tmp_path):
    src = tmp_path / "mirror" / "All_Tissues.csv"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    for i, source in enumerate([str(src), src.as_uri()]):
        dest = tmp_path / f"out{i}" / "All_Tissues.csv"
        record = _get(source, dest, sha256=PAYLOAD_SHA)
        assert dest.read_bytes() == PAYLOAD and not _parts(dest)
        assert record.http_status is None and record.sha256 == PAYLOAD_SHA
        assert record.source == source


def test_local_checksum_mismatch_and_missing(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"abc")
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError, match=str(src)):
        _get(str(src), dest, sha256="2" * 64)
    assert not dest.exists() and not _parts(dest)
    with pytest.raises(DownloadError, match="does not exist"):
        _get(str(tmp_path / "nope"), dest)


def test_unsupported_scheme(tmp_path):
    with pytest.raises(DownloadError, match="ftp"):
        _get("ftp://example.org/x", tmp_path / "x")


def test_hf_token_only_for_huggingface(monkeypatch, server, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "secret")
    hf = fetch._build_request("https://huggingface.co/datasets/x/resolve/abc/f.csv", 0)
    assert hf.unredirected_hdrs.get("Authorization") == "Bearer secret"
    assert "Authorization" not in hf.headers  # must not follow the redirect to the CDN
    assert fetch._build_request("https://cdn-lfs.huggingface.co/x", 0).unredirected_hdrs
    other = fetch._build_request("https://hgdownload.soe.ucsc.edu/x", 0)
    assert "Authorization" not in other.unredirected_hdrs and "Authorization" not in other.headers
    assert not fetch._is_hf_host("evilhuggingface.co")
    _get(server.add("f"), tmp_path / "f")
    assert server.requests("f")[0]["authorization"] is None


def test_redirect_keeps_range_but_drops_token(monkeypatch, server, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "secret")
    monkeypatch.setattr(fetch, "_HF_HOSTS", ("127.0.0.1",))  # pretend the test server is HF
    server.add("cdn/f")
    url = server.add("resolve/f", mode="redirect", location="/cdn/f")
    dest = tmp_path / "f"
    _leave_part(dest, url, PAYLOAD[:5000], PAYLOAD_SHA)
    record = _get(url, dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and record.resumed and record.http_status == 206
    assert server.requests("resolve/f")[0]["authorization"] == "Bearer secret"
    cdn = server.requests("cdn/f")[0]
    assert cdn["authorization"] is None and cdn["range"] == "bytes=5000-"


def test_provenance_json(server, tmp_path):
    record = _get(server.add("f"), tmp_path / "f")
    prov = tmp_path / "prov" / "f.download.json"
    write_download_provenance(record, prov)
    data = json.loads(prov.read_text())
    assert data == record.to_dict()
    assert set(data) == {"source", "path", "sha256", "size_bytes", "http_status", "resumed",
                         "attempts", "finished_utc", "verified"}


# --------------------------------------------------------------------------- prepare_fasta

SEQS = {"chr1": "ACGTacgtNN" * 25 + "ACG", "chr2": "GGGCCCAAAT" * 7, "chrM": "ACGT"}


def _fasta_text(width: int = 60) -> str:
    lines = []
    for name, seq in SEQS.items():
        lines.append(f">{name} some description")
        lines.extend(seq[i:i + width] for i in range(0, len(seq), width))
    return "\n".join(lines) + "\n"


def _check_fasta(dest: Path) -> None:
    fai = dest.with_name(dest.name + ".fai")
    assert dest.is_file() and fai.is_file()
    assert dest.read_text() == _fasta_text()  # plain, uncompressed
    genome = pyfaidx.Fasta(str(dest), build_index=False)  # must use our .fai, not build one
    assert {k: str(genome[k][:]) for k in genome.keys()}  # noqa: SIM118 - iterating a pyfaidx.Fasta yields records, not names == SEQS
    assert str(genome["chr1"][100:110]) == SEQS["chr1"][100:110]
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


@pytest.mark.parametrize("kind", ["plain", "gzip", "bgzip"])
def test_prepare_fasta(tmp_path, kind):
    plain = tmp_path / "in.fa"
    plain.write_text(_fasta_text())
    if kind == "plain":
        src = plain
    elif kind == "gzip":
        src = tmp_path / "in.bin"  # no .gz extension: detection must use the magic bytes
        src.write_bytes(gzip.compress(plain.read_bytes()))
    else:
        src = tmp_path / "in.fa.bgz"
        pysam.tabix_compress(str(plain), str(src))
    dest = tmp_path / "ref" / "hg38.fa"
    dest.parent.mkdir()
    dest.with_name("hg38.fa.fai").write_text("stale index\n")
    assert prepare_fasta(src, dest) == dest
    _check_fasta(dest)


def test_prepare_fasta_truncated_gzip(tmp_path):
    src = tmp_path / "hg38.fa.gz"
    data = gzip.compress((_fasta_text() * 50).encode())
    src.write_bytes(data[: len(data) // 2])
    dest = tmp_path / "ref" / "hg38.fa"
    with pytest.raises(FastaPrepError) as info:
        prepare_fasta(src, dest)
    assert str(src) in str(info.value) and "truncated" in str(info.value)
    assert not dest.exists() and not dest.with_name("hg38.fa.fai").exists()
    assert list(dest.parent.iterdir()) == []


def test_prepare_fasta_not_fasta(tmp_path):
    src = tmp_path / "page.html.gz"
    src.write_bytes(gzip.compress(b"<html>rate limited</html>"))
    dest = tmp_path / "hg38.fa"
    with pytest.raises(FastaPrepError, match="does not start with '>'") as info:
        prepare_fasta(src, dest)
    assert str(src) in str(info.value)
    assert not dest.exists() and not dest.with_name("hg38.fa.fai").exists()
    with pytest.raises(FastaPrepError, match="empty"):
        empty = tmp_path / "empty.fa"
        empty.write_bytes(b"")
        prepare_fasta(empty, dest)


def test_paper_config_plans_the_gtf_download(tmp_path):
    """config/paper.yaml's `tss.url` adds a fetch_tss job whose GTF feeds the variants rule."""
    from test_workflow import copy_workflow, snakemake

    workdir = copy_workflow(tmp_path / "wf")
    text = snakemake(workdir, "--dry-run", "--configfile", "config/paper.yaml").stdout
    block = next(b for b in text.split("\nrule ") if b.startswith("fetch_tss:"))
    assert "data/annotation/gencode.v44.annotation.gtf.gz" in block
    variants = next(b for b in text.split("\nrule ") if b.startswith("variants:"))
    assert "gencode.v44.annotation.gtf.gz" in variants
