"""Rules fetch_*: download one file (resume, retries, checksum) and record its provenance."""
import sys
from pathlib import Path

# Import the library from this checkout, so the workflow also runs under --use-conda without installing it.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from caduceus_vep import stages  # noqa: E402

sm = snakemake  # noqa: F821
from caduceus_vep import fetch  # noqa: E402


def download() -> None:
    record = fetch.download(sm.params.url, sm.output[0], sha256=sm.params.sha256)
    fetch.write_download_provenance(record, sm.output.provenance)
    stages.log.info("downloaded %s", record.to_dict())


stages.run_logged(sm.log[0], download)
