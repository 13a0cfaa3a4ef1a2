"""Job models: what a user asks for, its wire formats, validation and variables.

Imports nothing else of qcgpj_async.
"""

from ._convert import SIMPLE_KEYS, job_from_std, job_to_std, jobs_from_std, std_from_simple
from ._errors import (
    InvalidTransition,
    JobDescriptionError,
    JobNotFoundError,
    PilotClosedError,
    PilotStartError,
    PilotTimeoutError,
    QcgpjError,
)
from ._jobs import Jobs
from ._spec import (
    MODELS,
    SCHEDULERS,
    Dependencies,
    Execution,
    Iteration,
    IterationScheduler,
    JobSpec,
    ResourceCount,
    Resources,
    parse_wall_time,
)
from ._state import FINAL_STATES, JobState
from ._validate import check_name, check_std
from ._vars import EXECUTION_VARIABLES, SUBMIT_VARIABLES, substitute, substitute_obj

__all__ = (
    "EXECUTION_VARIABLES",
    "FINAL_STATES",
    "MODELS",
    "SCHEDULERS",
    "SIMPLE_KEYS",
    "SUBMIT_VARIABLES",
    "Dependencies",
    "Execution",
    "InvalidTransition",
    "Iteration",
    "IterationScheduler",
    "JobDescriptionError",
    "JobNotFoundError",
    "JobSpec",
    "JobState",
    "Jobs",
    "PilotClosedError",
    "PilotStartError",
    "PilotTimeoutError",
    "QcgpjError",
    "ResourceCount",
    "Resources",
    "check_name",
    "check_std",
    "job_from_std",
    "job_to_std",
    "jobs_from_std",
    "parse_wall_time",
    "std_from_simple",
    "substitute",
    "substitute_obj",
)
