"""What the srun executor runs, computed without running anything. Pure.

A task becomes one Slurm step on exactly the nodes and cores the engine gave
it (``srun --exact``), or, for the ``openmpi``/``intelmpi`` models, an
``mpirun`` started on this host with the allocation in a rankfile or on its
command line. Facts these functions rely on were measured on Slurm 22.05
(see ``.ci/slurm-cluster.sh``):

- Without ``--exact`` (and ``-c``), concurrent steps of one allocation run
  one after another; with it they share the allocation core by core.
- ``--distribution=arbitrary`` takes the host of every task from the file
  named by ``SLURM_HOSTFILE`` in srun's own environment (with ``-w`` it
  wants one entry per task): that is how ``srunmpi`` ranks land on each node
  exactly as the allocation has them, 3 + 1 included.
- srun reads many ``SLURM_*`` variables of its own environment as options:
  ``SLURM_NTASKS_PER_NODE=3,1`` (the form the original gave jobs) makes it
  fail ("Invalid numeric value"). So the variables that describe a job's
  share to the job are not put into srun's environment; the step starts
  ``/usr/bin/env NAME=VALUE... <argv>``, which sets them after srun and
  slurmstepd have set theirs (srun would otherwise overwrite SLURM_NNODES,
  SLURM_TASKS_PER_NODE... with its own spelling, and keep the job-wide
  SLURM_JOB_NODELIST).
- ``-J NAME`` names the step (``squeue -s`` lists it by that name, for
  ``scancel``) but also renames SLURM_JOB_NAME inside it; the wrapper puts
  the allocation's name back.
- The job's streams are opened by slurmstepd (``--input``, ``--output``,
  ``--error``; ``none`` is ``/dev/null``; one file for both works), not
  forwarded by srun: srun writes its own messages ("srun: error: n2: task 0:
  Exited with exit code 3") to its stderr, which must not be the job's.
  Those options take file name patterns (``%j``...); a backslash anywhere
  makes the name literal, and is removed from it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from ..engine import Allocation
from ._task import Task, gpu_environment

__all__ = (
    "ENV",
    "MPIRUN_MODELS",
    "gpu_options",
    "gpu_step_env",
    "node_gpu_prelude",
    "SHAPE_VARIABLES",
    "hostfile_text",
    "mpirun_argv",
    "mpirun_environment",
    "per_node_spec",
    "rankfile_text",
    "slurm_environment",
    "srun_argv",
    "srun_environment",
    "step_environment",
    "stream_options",
)

ENV = "/usr/bin/env"
"""Sets the job's view of Slurm inside the step, then execs the job (no extra process)."""

MPIRUN_MODELS = ("openmpi", "intelmpi")
"""Models started as ``mpirun`` on this host rather than as one srun step."""

SHAPE_VARIABLES = (
    "SLURM_NTASKS_PER_NODE",
    "SLURM_NTASKS_PER_SOCKET",
    "SLURM_NTASKS_PER_CORE",
    "SLURM_DISTRIBUTION",
    "SLURM_HOSTFILE",
)
"""Variables of the pilot's environment (set by ``salloc``/``sbatch`` options) that
srun would take as the shape of every step; the executor gives the shape itself."""

# Where each mpirun takes extra options for the srun that starts its daemons.
_MPIRUN_SRUN_ARGS = {
    "openmpi": "OMPI_MCA_plm_slurm_args",
    "intelmpi": "I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS",
}


def per_node_spec(counts: Sequence[int]) -> str:
    """Slurm's run-length form of per-node counts: ``[4, 4, 2]`` is ``4(x2),2``.

    Args:
        counts: one count per node, in node order.

    Returns:
        The compressed list, as in ``SLURM_TASKS_PER_NODE``.
    """
    out: list[str] = []
    i = 0
    while i < len(counts):
        j = i
        while j < len(counts) and counts[j] == counts[i]:
            j += 1
        out.append(str(counts[i]) if j - i == 1 else f"{counts[i]}(x{j - i})")
        i = j
    return ",".join(out)


def hostfile_text(allocation: Allocation) -> str:
    """``SLURM_HOSTFILE`` contents: one line per allocated core, its node's name."""
    return "".join(f"{p.node}\n" * len(p.cores) for p in allocation.parts)


def rankfile_text(allocation: Allocation) -> str:
    """An Open MPI rankfile: ``rank <i>=<node> slot=<core>``, one rank per core."""
    lines = []
    rank = 0
    for p in allocation.parts:
        for core in p.cores:
            lines.append(f"rank {rank}={p.node} slot={core}\n")
            rank += 1
    return "".join(lines)


def slurm_environment(allocation: Allocation, hostfile: str | None = None) -> dict[str, str]:
    """The ``SLURM_*`` variables that show a job its own share as if it were a Slurm job.

    Node lists are comma-separated names in allocation order; per-node counts
    are in Slurm's run-length form (``4(x2)``), in the same order.
    ``SLURM_NTASKS_PER_NODE`` is set only when every node has the same count
    (a list there is rejected by an ``srun`` the job may run itself).

    Args:
        allocation: the job's nodes and cores.
        hostfile: the ``SLURM_HOSTFILE`` path, when one was written.

    Returns:
        The variables, to override whatever the allocation set.
    """
    counts = [len(p.cores) for p in allocation.parts]
    nodes = ",".join(p.node for p in allocation.parts)
    nnodes = str(len(counts))
    ncores = str(sum(counts))
    per_node = per_node_spec(counts)
    env = {
        "SLURM_NNODES": nnodes,
        "SLURM_NODELIST": nodes,
        "SLURM_NPROCS": ncores,
        "SLURM_NTASKS": ncores,
        "SLURM_JOB_NODELIST": nodes,
        "SLURM_JOB_NUM_NODES": nnodes,
        "SLURM_JOB_CPUS_PER_NODE": per_node,
        "SLURM_STEP_NODELIST": nodes,
        "SLURM_STEP_NUM_NODES": nnodes,
        "SLURM_STEP_NUM_TASKS": ncores,
        "SLURM_STEP_TASKS_PER_NODE": per_node,
        "SLURM_TASKS_PER_NODE": per_node,
    }
    if len(set(counts)) == 1:
        env["SLURM_NTASKS_PER_NODE"] = str(counts[0])
    if hostfile is not None:
        env["SLURM_HOSTFILE"] = hostfile
    return env


def srun_environment(task_env: Mapping[str, str], hostfile: str | None) -> dict[str, str]:
    """srun's own environment: the task's, without the step-shaping variables.

    Args:
        task_env: the task's environment (the pilot's, plus ``QCG_PM_*``, plus
            the job's ``env``).
        hostfile: our ``SLURM_HOSTFILE`` (read by ``--distribution=arbitrary``).

    Returns:
        The environment to start srun with; srun exports it to the step.
    """
    env = {k: v for k, v in task_env.items() if k not in SHAPE_VARIABLES}
    if hostfile is not None:
        env["SLURM_HOSTFILE"] = hostfile
    return env


def step_environment(task: Task, hostfile: str | None) -> dict[str, str]:
    """What the wrapper sets inside the step: :func:`slurm_environment` and the job name.

    Args:
        task: the task.
        hostfile: the ``SLURM_HOSTFILE`` path, when one was written.

    Returns:
        Variables for ``/usr/bin/env NAME=VALUE...``.
    """
    env = slurm_environment(task.allocation, hostfile)
    name = task.getenv("SLURM_JOB_NAME")
    if name is not None:
        env["SLURM_JOB_NAME"] = name  # -J renamed it to the step's name
    return env


def gpu_options(task: Task) -> list[str]:
    """srun's GPU options for a task's step, where the GPUs are Slurm GRES.

    A step asks for the job's GPUs on each of its nodes (``--gres=gpu:N``; the
    engine gave it as many on every node) and Slurm binds them and sets the
    step's device variables per node; a step of a job without GPUs asks for
    none (``--gres=none``): by default a step gets every GRES of the allocation,
    which would hold every GPU while it runs. No option where the GPUs are not
    GRES (declared by the user) or the pilot has none.
    """
    gpu = task.gpu
    if gpu is None or not gpu.gres:
        return []
    n = len(task.allocation.parts[0].gpus)
    return [f"--gres=gpu:{n}" if n else "--gres=none"]


def gpu_step_env(task: Task) -> dict[str, str]:
    """GPU variables the step's wrapper sets: where the GPUs are GRES, a step that
    asks none (``--gres=none``) has Slurm unset the device variables, which
    shows every device of the node to CUDA where no cgroup hides them: they
    are set empty again here. Nothing in every other case."""
    gpu = task.gpu
    if gpu is None or not gpu.gres or task.allocation.parts[0].gpus:
        return {}
    return gpu_environment(task.allocation, gpu)


def node_gpu_prelude(task: Task) -> str | None:
    """A shell line run in the step before the job, for its GPU variables; None: none needed.

    - GPUs that are GRES, a job with GPUs: Slurm chose the step's devices and
      set ``CUDA_VISIBLE_DEVICES`` (``ROCR_VISIBLE_DEVICES`` for AMD) on each
      node; ``QCG_PM_GPUS`` is made to name the same devices.
    - Declared GPUs, a multi-node ``srunmpi`` step: each node has its own ids
      and srun exports one environment to all; ``$SLURMD_NODENAME`` picks them.
    """
    gpu, parts = task.gpu, task.allocation.parts
    if gpu is None:
        return None
    if gpu.gres:
        if not parts[0].gpus:
            return None
        var = "ROCR_VISIBLE_DEVICES" if gpu.vendor == "amd" else "CUDA_VISIBLE_DEVICES"
        return f'QCG_PM_GPUS="${{{var}-}}"; export QCG_PM_GPUS; exec "$0" "$@"'
    if task.model != "srunmpi":
        return None
    return _per_node_gpus(task)


def _per_node_gpus(task: Task) -> str | None:
    """A shell line that exports the job's GPU variables of the node it runs on
    (``$SLURMD_NODENAME``), then runs the job; None where every node's are the same."""
    gpu, parts = task.gpu, task.allocation.parts
    if gpu is None or len(parts) < 2 or len({p.gpus for p in parts}) == 1:
        return None
    cases = []
    for i, p in enumerate(parts):
        env = gpu_environment(task.allocation, gpu, i)
        sets = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        cases.append(f"{shlex.quote(p.node)}) export {sets};;")
    return f'case "${{SLURMD_NODENAME-}}" in {" ".join(cases)} esac; exec "$0" "$@"'


def _str_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]  # type: ignore[attr-defined]


def _literal(path: str, what: str) -> str:
    """A file name srun will not expand: ``%`` patterns escaped, backslashes refused."""
    if "\\" in path:
        raise ValueError(f"{what} {path!r}: srun cannot name a file with a backslash")
    i = path.find("%")
    return path if i < 0 else f"{path[:i]}\\{path[i:]}"


def stream_options(task: Task) -> list[str]:
    """srun's ``--input``/``--output``/``--error`` for the job's streams (``none``: /dev/null).

    Raises:
        ValueError: a file name srun cannot take literally (a backslash in it).
    """
    return [
        f"--input={_literal(task.stdin, 'stdin')}" if task.stdin else "--input=none",
        f"--output={_literal(task.stdout, 'stdout')}" if task.stdout else "--output=none",
        f"--error={_literal(task.stderr, 'stderr')}" if task.stderr else "--error=none",
    ]


def srun_argv(
    task: Task,
    *,
    step_name: str,
    step_env: Mapping[str, str] | None = None,
    srun: str = "srun",
    extra_args: Sequence[str] = (),
) -> tuple[str, ...]:
    """The srun command line of a task: one step on exactly its nodes and cores.

    - ``default`` and ``threads``: one process on the first node with all the
      job's cores there: ``-N1 -n1 -c<cores> -w <node>``;
    - ``srunmpi``: one rank per core, ``-N<nodes> -n<cores> -c1
      --distribution=arbitrary``, the hosts of the ranks coming from
      ``SLURM_HOSTFILE`` in srun's environment (:func:`srun_environment`).

    The job's streams are given by :func:`stream_options` (absolute paths,
    as :func:`~._task.prepare_task` makes them). ``model_opts.srun_args``
    come last, so they can override ours.

    Args:
        task: the task; its model must not be ``openmpi``/``intelmpi``.
        step_name: the unique step name (``-J``), to find it for ``scancel``.
        step_env: variables set inside the step before the job starts
            (:func:`step_environment`); none: no wrapper.
        srun: the srun program.
        extra_args: options for every step (before the job's ``srun_args``).

    Returns:
        The argv.

    Raises:
        ValueError: an MPI model started by ``mpirun``, an unknown model, or
            a stream srun cannot name.
    """
    parts = task.allocation.parts
    if task.model in ("default", "threads"):
        first = parts[0]
        shape = ["-N1", "-n1", f"--cpus-per-task={len(first.cores)}", f"--nodelist={first.node}"]
    elif task.model == "srunmpi":
        cores = task.allocation.cores
        shape = [f"-N{len(parts)}", f"-n{cores}", "--cpus-per-task=1", "--distribution=arbitrary"]
    elif task.model in MPIRUN_MODELS:
        raise ValueError(f"model {task.model!r} is started by mpirun, not as one srun step")
    else:
        raise ValueError(f"unknown model {task.model!r}")
    argv = [srun, "--exact", "--quiet", f"--job-name={step_name}", *shape, *stream_options(task)]
    argv += gpu_options(task)
    argv += extra_args
    argv += _str_list(task.model_opts.get("srun_args"))
    prelude = node_gpu_prelude(task)
    if step_env:
        argv.append(ENV)
        argv += (f"{k}={v}" for k, v in {**step_env, **gpu_step_env(task)}.items())
        if prelude is not None:
            argv += ("/bin/sh", "-c", prelude)
        elif "=" in task.argv[0]:
            # env would take it for one more NAME=VALUE: start it through sh.
            argv += ("/bin/sh", "-c", 'exec "$0" "$@"')
    argv += task.argv
    return tuple(argv)


def mpirun_argv(task: Task, rankfile: str | None = None) -> tuple[str, ...]:
    """The mpirun command line of an ``openmpi`` or ``intelmpi`` task, run on this host.

    - ``openmpi``: ``mpirun -n <cores> --rankfile <file> <mpirun_args> <argv>``
      (the rankfile from :func:`rankfile_text`);
    - ``intelmpi``: ``mpirun <mpirun_args> -host <node> -n <k> -env
      I_MPI_PIN_PROCESSOR_LIST <cores> <argv> : ...``, one section per node.

    GPUs: mpirun gives every rank its own environment, which names the first
    node's devices. Where the nodes' differ, each ``intelmpi`` section sets its
    node's (``-env``), and an ``openmpi`` rank starts through ``/bin/sh -c``
    that exports its node's (picked by ``$SLURMD_NODENAME``, which the ranks
    get from their daemons' step) before it runs the job.

    ``model_opts.mpirun`` names the program (default ``mpirun``).

    Args:
        task: the task.
        rankfile: the rankfile path (``openmpi``).

    Returns:
        The argv.

    Raises:
        ValueError: not one of those models, or ``openmpi`` without a rankfile.
    """
    opts = task.model_opts
    mpirun = str(opts.get("mpirun") or "mpirun")
    extra = _str_list(opts.get("mpirun_args"))
    if task.model == "openmpi":
        if rankfile is None:
            raise ValueError("model 'openmpi' needs a rankfile")
        n = str(task.allocation.cores)
        prelude = _per_node_gpus(task)
        rank = ("/bin/sh", "-c", prelude) if prelude is not None else ()
        return (mpirun, "-n", n, "--rankfile", rankfile, *extra, *rank, *task.argv)
    if task.model == "intelmpi":
        argv = [mpirun, *extra]
        gpu = task.gpu if _per_node_gpus(task) is not None else None  # the nodes' differ
        for i, p in enumerate(task.allocation.parts):
            if i:
                argv.append(":")
            cores = ",".join(map(str, p.cores))
            argv += ["-host", p.node, "-n", str(len(p.cores))]
            if gpu is not None:
                for k, v in gpu_environment(task.allocation, gpu, i).items():
                    argv += ["-env", k, v]
            argv += ["-env", "I_MPI_PIN_PROCESSOR_LIST", cores, *task.argv]
        return tuple(argv)
    raise ValueError(f"model {task.model!r} is not started by mpirun")


def mpirun_environment(task: Task, step_name: str) -> dict[str, str]:
    """mpirun's environment: the task's, the job's share of Slurm, srun options.

    mpirun reads the allocation from the ``SLURM_*`` variables, so it sees
    the job's share. The srun it starts its daemons with gets (unless the
    job's environment sets that variable) ``--overlap``, since the cores it
    needs are held by the pilot for this job, not free in Slurm's eyes, and
    ``--job-name=<step_name>``, so that the executor can find those steps
    and cancel them. No ``SLURM_HOSTFILE``: with one set, Open MPI 4.1's
    mpirun loses the topology of the other nodes ("no topology info is
    available for the following node") and hangs; the rankfile or the host
    sections place the ranks.

    Args:
        task: an ``openmpi`` or ``intelmpi`` task.
        step_name: the name the daemons' steps get.

    Returns:
        The environment.
    """
    env = srun_environment(task.env, None)
    env.update(slurm_environment(task.allocation))
    env.setdefault(_MPIRUN_SRUN_ARGS[task.model], f"--overlap --job-name={step_name}")
    return env
