"""Jobs on every worker replica: APScheduler per replica, row leases between replicas."""

from chomik.jobs.scheduling import Job, JobContext, Scheduler, claim_due, complete_claim

__all__ = ["Job", "JobContext", "Scheduler", "claim_due", "complete_claim"]
