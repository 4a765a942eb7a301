import os

import pytest

from caduceus_vep.atomic import atomic_path, write_text_atomic


def test_success_renames_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "sub" / "out.txt"
    write_text_atomic(dest, "hello")
    assert dest.read_text() == "hello"
    assert os.listdir(dest.parent) == ["out.txt"]
    assert oct(dest.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_failure_keeps_old_content_and_removes_temp(tmp_path):
    dest = tmp_path / "out.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("killed")
    assert dest.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]
