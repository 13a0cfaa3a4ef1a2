"""Unit tests of Slurm allocation discovery, with a fake ``scontrol``.

The ``scontrol show hostnames`` outputs below were captured from Slurm
22.05.8 (Debian 12) with the cluster of ``.ci/slurm-cluster.sh``;
``tests/slurm/test_discovery.py`` checks them against the live command when a
cluster is up. The ``SLURM_JOB_CPUS_PER_NODE`` values were seen in real
allocations of that cluster (2 nodes x 4 CPUs).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence

import pytest

from qcgpj_async.executors._slurm_env import (
    SlurmEnvironmentError,
    discover,
    expand_hostlist,
    in_allocation,
    parse_cpus_per_node,
)
from qcgpj_async.model import QcgpjError

# (host list, scontrol stdout, scontrol stderr, expected hosts); scontrol
# exited 0 in every case, even when it rejected the list.
EXPANDED: list[tuple[str, str, str, list[str]]] = [
    ("n1", "n1\n", "", ["n1"]),
    ("n[1-2]", "n1\nn2\n", "", ["n1", "n2"]),
    ("n[1-3,7],gpu01", "n1\nn2\nn3\nn7\ngpu01\n", "", ["n1", "n2", "n3", "n7", "gpu01"]),
    ("node[001-003]", "node001\nnode002\nnode003\n", "", ["node001", "node002", "node003"]),
    ("n[08-11]", "n08\nn09\nn10\nn11\n", "", ["n08", "n09", "n10", "n11"]),
    ("n[9-11]", "n9\nn10\nn11\n", "", ["n9", "n10", "n11"]),
    ("n[7-9,010-011]", "n7\nn8\nn9\nn010\nn011\n", "", ["n7", "n8", "n9", "n010", "n011"]),
    ("n[01-2]", "n01\nn02\n", "", ["n01", "n02"]),
    ("n[1-02]", "n1\nn2\n", "", ["n1", "n2"]),
    ("x[1,3,5]", "x1\nx3\nx5\n", "", ["x1", "x3", "x5"]),
    ("n[1-2],m[3-4]", "n1\nn2\nm3\nm4\n", "", ["n1", "n2", "m3", "m4"]),
    (
        "rack[1-2]-n[1-2]",
        "rack1-n1\nrack1-n2\nrack2-n1\nrack2-n2\n",
        "",
        ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"],
    ),
    ("n[1-2][3-4]", "n13\nn14\nn23\nn24\n", "", ["n13", "n14", "n23", "n24"]),
    ("host-1,host-[3-4]", "host-1\nhost-3\nhost-4\n", "", ["host-1", "host-3", "host-4"]),
    ("tcn[1000-1002]", "tcn1000\ntcn1001\ntcn1002\n", "", ["tcn1000", "tcn1001", "tcn1002"]),
    ("a,b,c", "a\nb\nc\n", "", ["a", "b", "c"]),
    (
        "n1.example.com,n2.example.com",
        "n1.example.com\nn2.example.com\n",
        "",
        ["n1.example.com", "n2.example.com"],
    ),
    ("n[000-002]", "n000\nn001\nn002\n", "", ["n000", "n001", "n002"]),
    ("n[1-2],", "n1\nn2\n", "", ["n1", "n2"]),
    ("n[1-3],n2", "n1\nn2\nn3\nn2\n", "", ["n1", "n2", "n3", "n2"]),
]

# (host list, scontrol stdout, scontrol stderr): lists Slurm 22.05 rejects
# (a suffix after brackets, bad ranges) or half-parses ("n[1-" gives "n]").
REJECTED: list[tuple[str, str, str]] = [
    ("a[01-02]b,c", "", "Invalid hostlist: a[01-02]b,c\n"),
    ("n[1-3]x", "", "Invalid hostlist: n[1-3]x\n"),
    ("n[1-2].ex.com", "", "Invalid hostlist: n[1-2].ex.com\n"),
    (
        "n[3-1]",
        "",
        "scontrol: error: _parse_single_range: Invalid range: `3-1'\nInvalid hostlist: n[3-1]\n",
    ),
    (
        "n[a-c]",
        "",
        "scontrol: error: _parse_single_range: Invalid range: `a-c'\nInvalid hostlist: n[a-c]\n",
    ),
    ("n[]", "", "scontrol: error: _parse_single_range: Invalid range: `'\nInvalid hostlist: n[]\n"),
    ("n[1-2]]", "", "Invalid hostlist: n[1-2]]\n"),
    (
        "n[1,,2]",
        "",
        "scontrol: error: _parse_single_range: Invalid range: `'\nInvalid hostlist: n[1,,2]\n",
    ),
    (
        "n[1-100000]",
        "",
        "scontrol: error: _parse_single_range: Too many hosts in range `1-100000'\n"
        "Invalid hostlist: n[1-100000]\n",
    ),
    ("n[1-", "n]\n", ""),
    ("n[[1-2]", "n[1\nn[2\n", ""),
]

# What scontrol says without a slurm.conf (after retrying for ~60 s).
NO_CONFIG_STDERR = (
    "scontrol: error: s_p_parse_file: cannot stat file /nonexistent: No such file or directory,"
    " retrying in 1sec up to 60sec\n"
    "scontrol: error: ClusterName needs to be specified\n"
    "scontrol: fatal: Unable to process configuration file\n"
)


class FakeScontrol:
    """A runner that answers ``scontrol show hostnames`` from recorded outputs."""

    def __init__(self, outputs: Mapping[str, tuple[int, str, str]] | None = None) -> None:
        self.outputs = dict(outputs or {})
        for nodelist, out, err, _ in EXPANDED:
            self.outputs.setdefault(nodelist, (0, out, err))
        for nodelist, out, err in REJECTED:
            self.outputs.setdefault(nodelist, (0, out, err))
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(tuple(argv))
        assert tuple(argv[:3]) == ("scontrol", "show", "hostnames"), argv
        assert len(argv) == 4, argv
        returncode, out, err = self.outputs[argv[3]]
        return subprocess.CompletedProcess(list(argv), returncode, out, err)


def raising(exc: BaseException) -> FakeScontrol:
    """A runner whose every call raises ``exc``."""

    class Raising(FakeScontrol):
        def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
            self.calls.append(tuple(argv))
            raise exc

    return Raising()


# --- expand_hostlist -----------------------------------------------------


@pytest.mark.parametrize(("nodelist", "expected"), [(c[0], c[3]) for c in EXPANDED])
def test_expand_hostlist_recorded(nodelist: str, expected: list[str]) -> None:
    runner = FakeScontrol()
    assert expand_hostlist(nodelist, runner=runner) == expected
    assert runner.calls == [("scontrol", "show", "hostnames", nodelist)]


@pytest.mark.parametrize("nodelist", [c[0] for c in REJECTED])
def test_expand_hostlist_rejected_names_variable_and_value(nodelist: str) -> None:
    with pytest.raises(SlurmEnvironmentError) as info:
        expand_hostlist(nodelist, runner=FakeScontrol(), variable="SLURM_JOB_NODELIST")
    assert f"SLURM_JOB_NODELIST={nodelist!r}" in str(info.value)


def test_expand_hostlist_reports_scontrol_message() -> None:
    with pytest.raises(SlurmEnvironmentError, match=r"Invalid range: `3-1'"):
        expand_hostlist("n[3-1]", runner=FakeScontrol())


def test_expand_hostlist_half_parsed_output_is_an_error() -> None:
    with pytest.raises(SlurmEnvironmentError, match=r"malformed host list, scontrol returned n\]"):
        expand_hostlist("n[1-", runner=FakeScontrol())


@pytest.mark.parametrize("nodelist", ["", "   ", "\n"])
def test_expand_hostlist_empty_is_rejected_without_running_scontrol(nodelist: str) -> None:
    runner = FakeScontrol()
    with pytest.raises(SlurmEnvironmentError, match="empty host list"):
        expand_hostlist(nodelist, runner=runner, variable="SLURM_NODELIST")
    assert runner.calls == []


def test_expand_hostlist_without_scontrol() -> None:
    runner = raising(FileNotFoundError(2, "No such file or directory", "scontrol"))
    with pytest.raises(SlurmEnvironmentError) as info:
        expand_hostlist("n[1-2]", runner=runner, variable="SLURM_JOB_NODELIST")
    message = str(info.value)
    assert "scontrol not found" in message
    assert "SLURM_JOB_NODELIST='n[1-2]'" in message
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_expand_hostlist_scontrol_timeout_hints_at_config() -> None:
    runner = raising(subprocess.TimeoutExpired(["scontrol"], 20.0))
    with pytest.raises(SlurmEnvironmentError, match=r"timed out after 20 s.*SLURM_CONF"):
        expand_hostlist("n[1-2]", runner=runner)


def test_expand_hostlist_scontrol_not_executable() -> None:
    runner = raising(PermissionError(13, "Permission denied", "scontrol"))
    with pytest.raises(SlurmEnvironmentError, match="cannot run scontrol: .*Permission denied"):
        expand_hostlist("n[1-2]", runner=runner)


def test_expand_hostlist_scontrol_fails_without_config() -> None:
    runner = FakeScontrol({"n[1-2]": (1, "", NO_CONFIG_STDERR)})
    with pytest.raises(SlurmEnvironmentError, match="Unable to process configuration file"):
        expand_hostlist("n[1-2]", runner=runner)


def test_expand_hostlist_nonzero_exit_without_output() -> None:
    runner = FakeScontrol({"n[1-2]": (1, "", "")})
    with pytest.raises(SlurmEnvironmentError, match="exit status 1, no output"):
        expand_hostlist("n[1-2]", runner=runner)


def test_expand_hostlist_nonzero_exit_with_output_is_still_an_error() -> None:
    runner = FakeScontrol({"n[1-2]": (2, "n1\nn2\n", "")})
    with pytest.raises(SlurmEnvironmentError, match="exit status 2"):
        expand_hostlist("n[1-2]", runner=runner)


def test_error_is_a_value_error_and_a_qcgpj_error() -> None:
    assert issubclass(SlurmEnvironmentError, ValueError)
    assert issubclass(SlurmEnvironmentError, QcgpjError)


# --- parse_cpus_per_node -------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # seen in real allocations: -N2 -n8, -N2 -n6, -n5, --ntasks-per-node=1, -n1, -n3, -c3
        ("4(x2)", [4, 4]),
        ("4,2", [4, 2]),
        ("4,1", [4, 1]),
        ("1(x2)", [1, 1]),
        ("1", [1]),
        ("3", [3]),
        ("3(x2)", [3, 3]),
        # larger shapes of the same grammar
        ("4(x2),2", [4, 4, 2]),
        ("16(x3),8,2(x2)", [16, 16, 16, 8, 2, 2]),
        ("128(x1)", [128]),
        ("2,4(x2),2", [2, 4, 4, 2]),
        (" 4(x2) \n", [4, 4]),
    ],
)
def test_parse_cpus_per_node(value: str, expected: list[int]) -> None:
    assert parse_cpus_per_node(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "x",
        "4(x)",
        "4(2)",
        "4x2",
        "4(x2",
        "4(x2)(x2)",
        "-1",
        "4,,2",
        "4,",
        ",4",
        "4 ,2",
        "4.0",
        "(x2)",
        "four",
        "4(X2)",
    ],
)
def test_parse_cpus_per_node_rejects_garbage(value: str) -> None:
    with pytest.raises(SlurmEnvironmentError) as info:
        parse_cpus_per_node(value)
    assert f"SLURM_JOB_CPUS_PER_NODE={value!r}" in str(info.value)


@pytest.mark.parametrize("value", ["", "  "])
def test_parse_cpus_per_node_rejects_empty(value: str) -> None:
    with pytest.raises(SlurmEnvironmentError, match="empty"):
        parse_cpus_per_node(value)


@pytest.mark.parametrize("value", ["0", "4,0", "4(x0)", "0(x2)"])
def test_parse_cpus_per_node_rejects_zero(value: str) -> None:
    with pytest.raises(SlurmEnvironmentError, match="zero in"):
        parse_cpus_per_node(value)


# --- in_allocation --------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SLURM_JOB_ID": "42"}, True),
        ({"SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "n1"}, True),
        ({}, False),
        ({"SLURM_JOB_ID": ""}, False),
        ({"SLURM_JOB_ID": " "}, False),
        ({"SLURM_JOB_NODELIST": "n1", "SLURM_JOBID": "42"}, False),
    ],
)
def test_in_allocation(env: dict[str, str], expected: bool) -> None:
    assert in_allocation(env) is expected


# --- discover -------------------------------------------------------------

# What `salloc -N2 -n8` on the test cluster sets (abridged).
SALLOC_ENV = {
    "SLURM_JOB_ID": "2",
    "SLURM_JOB_NODELIST": "n[1-2]",
    "SLURM_NODELIST": "n[1-2]",
    "SLURM_JOB_CPUS_PER_NODE": "4(x2)",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NNODES": "2",
    "SLURM_NTASKS": "8",
    "SLURM_TASKS_PER_NODE": "4(x2)",
}


def env_with(**changes: str | None) -> dict[str, str]:
    """SALLOC_ENV with variables replaced, or removed when given None."""
    env = dict(SALLOC_ENV)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def test_discover_salloc_environment() -> None:
    assert discover(SALLOC_ENV, runner=FakeScontrol()) == [("n1", 4), ("n2", 4)]


def test_discover_uneven_cpus() -> None:
    env = env_with(SLURM_JOB_NODELIST="n[1-3,7],gpu01", SLURM_JOB_CPUS_PER_NODE="4(x2),2,1,8")
    assert discover(env, runner=FakeScontrol()) == [
        ("n1", 4),
        ("n2", 4),
        ("n3", 2),
        ("n7", 1),
        ("gpu01", 8),
    ]


def test_discover_prefers_job_nodelist() -> None:
    runner = FakeScontrol()
    env = env_with(SLURM_JOB_NODELIST="n[1-2]", SLURM_NODELIST="x[1,3,5]")
    assert discover(env, runner=runner) == [("n1", 4), ("n2", 4)]
    assert runner.calls == [("scontrol", "show", "hostnames", "n[1-2]")]


@pytest.mark.parametrize("job_nodelist", [None, "", " "])
def test_discover_falls_back_to_slurm_nodelist(job_nodelist: str | None) -> None:
    env = env_with(SLURM_JOB_NODELIST=job_nodelist, SLURM_NODELIST="x[1,3,5]")
    env["SLURM_JOB_CPUS_PER_NODE"] = "2(x3)"
    assert discover(env, runner=FakeScontrol()) == [("x1", 2), ("x3", 2), ("x5", 2)]


def test_discover_without_nodelist_names_both_variables() -> None:
    env = env_with(SLURM_JOB_NODELIST=None, SLURM_NODELIST=None)
    with pytest.raises(SlurmEnvironmentError) as info:
        discover(env, runner=FakeScontrol())
    assert str(info.value) == "neither SLURM_JOB_NODELIST nor SLURM_NODELIST is set"


def test_discover_outside_allocation_says_so() -> None:
    with pytest.raises(SlurmEnvironmentError, match=r"SLURM_JOB_ID is not set: not inside"):
        discover({}, runner=FakeScontrol())


@pytest.mark.parametrize("cpus", [None, ""])
def test_discover_without_cpus_per_node(cpus: str | None) -> None:
    with pytest.raises(SlurmEnvironmentError, match=r"^SLURM_JOB_CPUS_PER_NODE is not set$"):
        discover(env_with(SLURM_JOB_CPUS_PER_NODE=cpus), runner=FakeScontrol())


@pytest.mark.parametrize(
    ("cpus", "counts"),
    [
        ("4", r"2 node\(s\) but .* for 1$"),
        ("4(x3)", r"2 node\(s\) but .* for 3$"),
        ("4,4,2", "for 3$"),
    ],
)
def test_discover_count_mismatch_names_both_variables(cpus: str, counts: str) -> None:
    with pytest.raises(SlurmEnvironmentError, match=counts) as info:
        discover(env_with(SLURM_JOB_CPUS_PER_NODE=cpus), runner=FakeScontrol())
    message = str(info.value)
    assert "SLURM_JOB_NODELIST='n[1-2]'" in message
    assert f"SLURM_JOB_CPUS_PER_NODE={cpus!r}" in message


def test_discover_duplicate_nodes() -> None:
    env = env_with(SLURM_JOB_NODELIST="n[1-3],n2", SLURM_JOB_CPUS_PER_NODE="4(x4)")
    with pytest.raises(SlurmEnvironmentError, match=r"more than once: n2$"):
        discover(env, runner=FakeScontrol())


def test_discover_bad_nodelist_names_the_variable() -> None:
    env = env_with(SLURM_JOB_NODELIST=None, SLURM_NODELIST="a[01-02]b,c")
    with pytest.raises(SlurmEnvironmentError, match=r"^SLURM_NODELIST='a\[01-02\]b,c': .*Invalid"):
        discover(env, runner=FakeScontrol())


def test_discover_bad_cpus_per_node() -> None:
    with pytest.raises(SlurmEnvironmentError, match=r"SLURM_JOB_CPUS_PER_NODE='4\(x2\)x'"):
        discover(env_with(SLURM_JOB_CPUS_PER_NODE="4(x2)x"), runner=FakeScontrol())


def test_discover_without_scontrol() -> None:
    runner = raising(FileNotFoundError(2, "No such file or directory", "scontrol"))
    with pytest.raises(SlurmEnvironmentError, match=r"SLURM_JOB_NODELIST='n\[1-2\]'.*not found"):
        discover(SALLOC_ENV, runner=runner)


def test_discover_single_node_needs_no_brackets() -> None:
    env = env_with(SLURM_JOB_NODELIST="n1", SLURM_JOB_CPUS_PER_NODE="3")
    assert discover(env, runner=FakeScontrol()) == [("n1", 3)]
