"""The one adapter between a Snakemake rule and a library stage (``caduceus_vep.stages``).

A rule's named inputs and params are passed as keyword arguments of the same names, its named
outputs as ``out_<name>``, plus ``threads`` and ``require_gpu`` (a job given the ``gpu`` resource
must run on CUDA) where the stage takes them. An empty optional input (``[]``) becomes None. The
stage runs with logging into the rule's log; a known input or configuration problem ends the job
with its one-line message instead of a traceback.
"""

import inspect
import os
import sys
from pathlib import Path

# Passive OpenMP waiting, set before torch loads: spinning threads of a busy machine (a shared node,
# other jobs) made a 2-thread embed job up to 30x slower than a 1-thread one; passive is not.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Import the library from this checkout, so the workflow also runs under --use-conda without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from caduceus_vep import stages  # noqa: E402
from caduceus_vep.atomic import RULE_ENV, kill_point, remove_stale_temporaries  # noqa: E402


def _value(value):
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # a Namedlist of files
        return [str(v) for v in value] or None
    return value


def run(sm, stage_name: str) -> None:
    """Call ``stages.<stage_name>`` with the rule's named inputs, params and outputs."""
    stage = getattr(stages, stage_name)
    kwargs = {name: _value(value) for name, value in sm.input.items()}
    kwargs.update({name: value for name, value in sm.params.items()})
    kwargs.update({f"out_{name}": str(value) for name, value in sm.output.items()})
    accepted = inspect.signature(stage).parameters
    if "threads" in accepted:
        kwargs["threads"] = sm.threads
    if "require_gpu" in accepted:
        kwargs["require_gpu"] = int(sm.resources.get("gpu", 0)) > 0
    os.environ[RULE_ENV] = sm.rule  # for the fault-injection hook (inert unless the test suite sets it)
    for output in sm.output:  # a killed earlier attempt of this job may have left temporary files
        remove_stale_temporaries(output)
    stages.run_logged(sm.log[0] if sm.log else None, stage, **kwargs)
    kill_point("end")
