"""Jobs on every worker replica: APScheduler per replica, row leases between replicas.

`claimed(...)` builds a job over due rows (one transaction per row, under a lease),
`exclusive(...)` a job that one replica at a time runs (the prunes); the kit's own
jobs are in `housekeeping.KIT_JOBS`, which every worker runs.
"""

from chomik.jobs.runner import claimed, exclusive
from chomik.jobs.scheduling import (
    Job,
    JobContext,
    Scheduler,
    StaleClaimError,
    claim_due,
    complete_claim,
    notify_job,
    release_claim,
)

__all__ = [
    "Job",
    "JobContext",
    "Scheduler",
    "StaleClaimError",
    "claim_due",
    "claimed",
    "complete_claim",
    "exclusive",
    "notify_job",
    "release_claim",
]
