"""The scheduler engine: pure and synchronous; events in, instructions out.

No I/O, no anyio, no clock: time is an argument of every call.
"""

from ._compact import RunTable
from ._engine import Engine, Instruction
from ._gpus import VENDORS, GpuSetup, parse_gpu_ids
from ._itersched import maximum_iters, split_into
from ._lifecycle import ALLOWED
from ._records import Job, Kill, Launch, Outcome, Run, StateChanged
from ._resources import (
    Allocation,
    NodePart,
    Requirement,
    ResourcePool,
    parse_nodes,
    parse_nodes_gpus,
)
from ._submit import requirement

__all__ = (
    "ALLOWED",
    "VENDORS",
    "Allocation",
    "Engine",
    "GpuSetup",
    "Instruction",
    "Job",
    "Kill",
    "Launch",
    "NodePart",
    "Outcome",
    "Requirement",
    "ResourcePool",
    "Run",
    "RunTable",
    "StateChanged",
    "maximum_iters",
    "parse_gpu_ids",
    "parse_nodes",
    "parse_nodes_gpus",
    "requirement",
    "split_into",
)
