"""The conda environment, pyproject.toml and the repository layout agree."""

import re
import tomllib

import yaml
from conftest import REPO

# conda-forge names of the same packages
CONDA_TO_PYPI = {"pytorch": "torch", "snakemake-minimal": "snakemake", "matplotlib-base": "matplotlib", "huggingface_hub": "huggingface-hub"}
SPEC = re.compile(r"^([A-Za-z0-9_.\-]+)\s*(.*)$")


def parse(spec: str) -> tuple[str, str]:
    name, version = SPEC.match(spec.strip()).groups()
    return name.lower(), version.replace(" ", "")


def test_conda_env_matches_pyproject():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pip_deps = dict(parse(d) for d in pyproject["project"]["dependencies"])
    env = yaml.safe_load((REPO / "envs/caduceus-vep.yaml").read_text())
    conda_deps = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):  # the `pip:` subsection: PyPI names and specs as they are
            assert set(dep) == {"pip"}, dep
            for spec in dep["pip"]:
                name, version = parse(spec)
                assert name not in conda_deps, f"{name} both from conda and from pip"
                conda_deps[name] = version
            continue
        name, version = parse(dep)
        if name not in ("python", "pip"):
            name = CONDA_TO_PYPI.get(name, name)
            assert name not in conda_deps, f"{name} listed twice"
            conda_deps[name] = version
    assert conda_deps == pip_deps


def test_conda_env_installs_pip_packages_with_pip():
    env = yaml.safe_load((REPO / "envs/caduceus-vep.yaml").read_text())
    deps = env["dependencies"]
    pip_section = [d for d in deps if isinstance(d, dict)]
    assert len(pip_section) <= 1
    if pip_section:
        assert "pip" in deps, "a `pip:` subsection needs pip among the conda packages"


def test_python_floor_matches():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    env = yaml.safe_load((REPO / "envs/caduceus-vep.yaml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert parse(python)[1] == pyproject["project"]["requires-python"]


def test_torch_spec_accepts_the_cpu_wheel():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    from packaging.requirements import Requirement

    torch = next(Requirement(d) for d in pyproject["project"]["dependencies"] if d.startswith("torch"))
    assert torch.specifier.contains("2.13.0")
    assert "torch==2.13.0" in (REPO / "constraints.txt").read_text()


def test_every_rule_file_is_included_and_every_script_used():
    snakefile = (REPO / "Snakefile").read_text()
    rules = sorted(p.name for p in (REPO / "rules").glob("*.smk"))
    assert all(f'include: "rules/{r}"' in snakefile for r in rules)
    rule_text = "".join((REPO / "rules" / r).read_text() for r in rules)
    # _adapter.py is the helper every script imports, not a script of its own.
    scripts = sorted(p.name for p in (REPO / "workflow_scripts").glob("*.py") if not p.name.startswith("_"))
    assert all(f"../workflow_scripts/{s}" in rule_text for s in scripts)
