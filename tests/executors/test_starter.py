"""Starting processes: posix_spawn (the fast way) and Popen give the same child, the same errors."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest

from qcgpj_async import Jobs
from qcgpj_async.engine import Allocation, Launch, NodePart
from qcgpj_async.executors import LaunchError, prepare_task
from qcgpj_async.executors._posix_spawn import spawner
from qcgpj_async.executors._spawn import Starter

ALLOC = Allocation((NodePart("n1", (0, 1), None, 0),))
FAST = spawner() is not None


def task(root: Path, env: dict[str, str] | None = None, **kw: object):
    (spec,) = Jobs().add(name="j", **kw).jobs()
    base = {"PATH": os.environ.get("PATH", os.defpath), **(env or {})}
    return prepare_task(
        Launch(1, "j", None, spec, ALLOC), root_wd=str(root), base_env=base, step_id="p.1"
    )


@pytest.fixture(params=["posix_spawn", "popen"])
def starter(request: pytest.FixtureRequest):
    fast = request.param == "posix_spawn"
    if fast and not FAST:
        pytest.skip("glibc's posix_spawn with chdir (glibc >= 2.29) is not available here")
    s = Starter(fast=fast)
    assert s.fast is fast
    yield s
    s.close()


def run(starter: Starter, t) -> int:
    return starter.start(t, t.argv).wait()


def test_the_fast_way_is_used_on_this_machine() -> None:
    # CI runs on Debian (glibc 2.36): if this fails, the benchmarks measure Popen.
    assert os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    assert FAST


def test_wd_env_streams_session_and_signals(starter: Starter, tmp_path: Path) -> None:
    t = task(
        tmp_path,
        env={"FOO": "bar baz"},
        wd="sub/dir",
        stdin="in",
        stdout="out",
        stderr="out",
        script="cat; pwd; echo $FOO $QCG_PM_NPROCS; ps -o sid= -p $$; "
        "echo $$; grep SigIgn /proc/self/status; echo err >&2",
    )
    os.makedirs(tmp_path / "sub/dir")
    (tmp_path / "sub/dir/in").write_text("input\n")
    p = starter.start(t, t.argv)
    assert p.wait() == 0
    lines = (tmp_path / "sub/dir/out").read_text().splitlines()
    assert lines[0] == "input"
    assert lines[1] == str(tmp_path / "sub/dir")
    assert lines[2] == "bar baz 2"
    assert lines[3].strip() == lines[4] == str(p.pid)  # a session (and group) of its own
    ignored = int(lines[5].split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))  # SIGPIPE back to its default
    assert lines[6] == "err"  # stdout and stderr share one file, in order


def test_unset_streams_are_dev_null(starter: Starter, tmp_path: Path) -> None:
    t = task(tmp_path, script="readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2 > where")
    assert run(starter, t) == 0
    assert (tmp_path / "where").read_text().split() == ["/dev/null"] * 3


def test_exit_codes_and_signals(starter: Starter, tmp_path: Path) -> None:
    assert run(starter, task(tmp_path, script="exit 3")) == 3
    assert run(starter, task(tmp_path, script="kill -SEGV $$")) == -signal.SIGSEGV


def test_the_program_is_searched_in_the_jobs_path(starter: Starter, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    prog = bindir / "hello-qcgpj"
    prog.write_text("#!/bin/sh\necho hello > hello.out\n")
    prog.chmod(prog.stat().st_mode | stat.S_IXUSR)
    t = task(tmp_path, env={"PATH": f"{bindir}:/usr/bin:/bin"}, exec="hello-qcgpj")
    assert run(starter, t) == 0
    assert (tmp_path / "hello.out").read_text() == "hello\n"
    with pytest.raises(LaunchError, match="job j: executable 'hello-qcgpj' not found"):
        run(starter, task(tmp_path, exec="hello-qcgpj"))  # not in the default PATH


def test_a_relative_path_entry_is_searched_from_the_jobs_wd(
    starter: Starter, tmp_path: Path
) -> None:
    (tmp_path / "w/tools").mkdir(parents=True)
    prog = tmp_path / "w/tools/rel-qcgpj"
    prog.write_text("#!/bin/sh\necho rel > rel.out\n")
    prog.chmod(0o755)
    t = task(tmp_path, env={"PATH": "tools:/usr/bin:/bin"}, wd="w", exec="rel-qcgpj")
    assert run(starter, t) == 0
    assert (tmp_path / "w/rel.out").read_text() == "rel\n"


def test_errors_name_the_job_and_the_program(starter: Starter, tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="job j: executable '/no/such/prog' not found"):
        run(starter, task(tmp_path, exec="/no/such/prog"))
    (tmp_path / "plain").write_text("not a program")
    with pytest.raises(LaunchError, match="'./plain' is not executable"):
        run(starter, task(tmp_path, exec="./plain"))
    with pytest.raises(LaunchError, match="cannot open stdout"):
        run(starter, task(tmp_path, exec="/bin/true", stdout="/proc/no/such/file"))
    with pytest.raises((LaunchError, ValueError), match="null byte"):
        run(starter, task(tmp_path, exec="/bin/echo", args=["a\0b"]))


def test_a_wd_removed_after_a_start_is_made_again(starter: Starter, tmp_path: Path) -> None:
    t = task(tmp_path, wd="gone", script="echo 1 > f")
    assert run(starter, t) == 0
    (tmp_path / "gone/f").unlink()
    (tmp_path / "gone").rmdir()
    assert run(starter, t) == 0
    assert (tmp_path / "gone/f").read_text() == "1\n"


def test_inherited_descriptors_are_not_passed_on(tmp_path: Path) -> None:
    if not FAST:
        pytest.skip("glibc's posix_spawn with chdir is not available here")
    r, w = os.pipe()
    os.set_inheritable(w, True)  # as if this process had inherited it open
    try:
        s = Starter()
        t = task(tmp_path, script="ls /proc/self/fd > fds")
        assert run(s, t) == 0
        s.close()
    finally:
        os.close(r)
        os.close(w)
    fds = {int(x) for x in (tmp_path / "fds").read_text().split()}
    assert w not in fds
    assert fds <= {0, 1, 2, 3}  # 3: ls's own listing
