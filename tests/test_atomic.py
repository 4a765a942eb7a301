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


def test_kill_point_kills_the_process_group_before_the_rename_and_stale_temporaries_are_removed(tmp_path):
    """The fault-injection hook: SIGKILL just before the rename leaves no output, only a temporary file,
    which the next attempt of the job removes."""
    import signal
    import subprocess
    import sys

    from caduceus_vep.atomic import KILL_AT_ENV, KILL_LOG_ENV, RULE_ENV, remove_stale_temporaries

    dest = tmp_path / "out[1].tsv"
    code = ("from caduceus_vep.atomic import write_text_atomic; import sys; "
            f"write_text_atomic({str(dest)!r}, 'complete'); print('not killed')")
    env = {**os.environ, KILL_AT_ENV: "score@write,evaluate@end", KILL_LOG_ENV: str(tmp_path / "kills"), RULE_ENV: "score"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, start_new_session=True)
    assert proc.returncode == -signal.SIGKILL and "not killed" not in proc.stdout
    assert not dest.exists()
    assert (tmp_path / "kills").read_text() == "score@write\n"
    leftovers = list(tmp_path.glob(".out[[]1].tsv.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].read_text() == "complete"
    (tmp_path / ".other.tsv.abc.tmp").write_text("another output's")
    assert remove_stale_temporaries(dest) == leftovers
    assert not leftovers[0].exists() and (tmp_path / ".other.tsv.abc.tmp").exists()
    # Another rule, or no hook configured: no kill.
    env[RULE_ENV] = "report"
    ok = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, start_new_session=True)
    assert ok.returncode == 0 and dest.read_text() == "complete"
