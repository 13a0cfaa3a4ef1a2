"""How the srun executor turns srun's exit status into a job's exit code (pure).

The messages below are what srun 22.05 printed on the one-host test cluster
(``.ci/slurm-cluster.sh``) for each case, with the exit status it returned;
``tests/slurm/test_srun.py`` checks the same cases on the real cluster.
"""

from __future__ import annotations

import signal

import pytest

from qcgpj_async.executors.srun import step_exit_code

CANCELLED = "slurmstepd-n1: error: *** STEP 3.9 ON n1 CANCELLED AT 2026-11-23T23:30:52 ***\n"


@pytest.mark.parametrize(
    ("code", "messages", "expected"),
    [
        # One task killed by a signal: srun exits 128+N and names the signal.
        (137, "srun: error: n1: task 0: Killed\n", -9),
        (143, "srun: error: n1: task 0: Terminated\n", -15),
        (139, "srun: error: n1: task 0: Segmentation fault\n", -11),
        (134, "srun: error: n1: task 0: Aborted\n", -6),
        (130, "srun: error: n1: task 0: Interrupt\n", -2),
        (129, "srun: error: n1: task 0: Hangup\n", -1),
        (138, "srun: error: n1: task 0: User defined signal 1\n", -10),
        (139, "srun: error: n1: tasks 0-1: Segmentation fault (core dumped)\n", -11),
        # The step cancelled (scancel --signal=TERM, or SIGTERM to srun).
        (143, CANCELLED + "srun: error: n1: task 0: Terminated\n", -15),
        (137, CANCELLED + "srun: error: n1: task 0: Killed\n", -9),
        # A task that exits 128+N itself is not a signal.
        (137, "srun: error: n1: task 0: Exited with exit code 137\n", 137),
        (143, "srun: error: n1: task 0: Exited with exit code 143\n", 143),
        (139, "srun: error: n1: task 0: Exited with exit code 139\n", 139),
        (143, CANCELLED + "srun: error: n1: task 0: Exited with exit code 143\n", 143),
        (
            137,
            "srun: error: n1: task 0: Exited with exit code 137\n"
            "srun: error: n2: task 1: Exited with exit code 137\n",
            137,
        ),
        # Several tasks: any signal outranks every exit code, the highest signal wins.
        (
            137,
            "srun: error: n1: task 0: Killed\nsrun: error: n2: task 1: Exited with exit code 3\n",
            -9,
        ),
        (
            137,
            "srun: error: n1: task 0: Exited with exit code 137\nsrun: error: n2: task 1: Killed\n",
            -9,
        ),
        (
            137,
            "srun: error: n1: task 0: Exited with exit code 200\nsrun: error: n2: task 1: Killed\n",
            -9,
        ),
        (143, "srun: error: n1: task 0: Terminated\nsrun: error: n2: task 1: Killed\n", -15),
        (137, "srun: error: n2: task 1: Killed\nsrun: error: n1: task 0: Killed\n", -9),
        (137, "srun: error: n[1-2]: tasks 0,2-5: Killed\n", -9),
        # Codes that cannot be signals, or nothing that says so: unchanged.
        (0, "", 0),
        (3, "srun: error: n1: task 0: Exited with exit code 3\n", 3),
        (128, "srun: error: n1: task 0: Exited with exit code 128\n", 128),
        (255, "srun: error: n1: task 0: Exited with exit code 255\n", 255),
        (137, "", 137),
        (137, "srun: error: Unable to create step for job 5: Invalid argument\n", 137),
        # A signal line that names another signal than the status: no guess.
        (137, "srun: error: n1: task 0: Terminated\n", 137),
        # A translated description is not recognised: the status stays.
        (137, "srun: error: n1: task 0: Getötet\n", 137),
        # The job's words are not srun's: only whole "srun: error:" lines count.
        (137, "job said: srun: error: n1: task 0: Killed\n", 137),
        # srun itself died of a signal: already negative.
        (-9, "", -9),
        (-15, "srun: error: n1: task 0: Killed\n", -15),
    ],
)
def test_step_exit_code(code: int, messages: str, expected: int) -> None:
    assert step_exit_code(code, messages) == expected


def test_real_time_signals_are_recognised() -> None:
    n = signal.SIGRTMIN + 2
    text = signal.strsignal(n)
    assert text is not None
    assert step_exit_code(128 + n, f"srun: error: n1: task 0: {text}\n") == -n
