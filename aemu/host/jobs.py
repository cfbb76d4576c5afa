"""Background jobs as QEMU's job API has them (qapi/job.json), for the
snapshot commands: ``snapshot-save``, ``snapshot-load`` and ``snapshot-delete``
start a job and return; the job reports through ``JOB_STATUS_CHANGE`` events
and ``query-jobs``, and stays until ``job-dismiss`` (QEMU's snapshot jobs are
created with JOB_MANUAL_DISMISS, and finalise on their own).

    created -> running -> waiting -> pending -> concluded     (success)
    created -> running -> aborting -> concluded               (failure: JobInfo.error)
    concluded --job-dismiss--> null                           (the job is gone)

One ``Jobs`` per VM: a VM's QMP socket is one QEMU process.
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

from aemu.host.protocol import QmpError

#: QEMU's id_wellformed(): a letter, then letters, digits, '-', '.', '_'
JOB_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")

#: verbs QMP offers on jobs and the states that accept them (QEMU's JobVerbTable,
#: reduced to what a job that cannot pause or be cancelled midway has)
_VERBS = {"dismiss": ("concluded",)}


class JobFailed(Exception):
    """What a job's work raises to fail with a message (JobInfo.error)."""


@dataclass
class Job:
    id: str
    type: str
    status: str = "created"
    current_progress: int = 0
    total_progress: int = 1
    error: Optional[str] = None
    task: Optional[asyncio.Task] = field(default=None, repr=False)
    result: Any = None

    def info(self) -> dict[str, Any]:
        """QEMU's JobInfo."""
        out: dict[str, Any] = {"id": self.id, "type": self.type, "status": self.status,
                               "current-progress": self.current_progress,
                               "total-progress": self.total_progress}
        if self.error is not None:
            out["error"] = self.error
        return out


class Jobs:
    """The jobs of one VM; ``emit(name, data)`` sends an event to its clients."""

    def __init__(self, emit: Callable[[str, dict], None]) -> None:
        self._emit = emit
        self.jobs: dict[str, Job] = {}

    def _set(self, job: Job, status: str) -> None:
        job.status = status
        self._emit("JOB_STATUS_CHANGE", {"id": job.id, "status": status})

    def start(self, job_id: str, kind: str, work: Callable[[], Awaitable[Any]]) -> Job:
        """Create a job and start ``work`` in the background (QmpError for a
        bad or taken id: the command fails and nothing starts).  Any
        exception of ``work`` fails the job with its message."""
        if not JOB_ID_RE.fullmatch(job_id):
            raise QmpError(f"Invalid job ID '{job_id}'")
        if job_id in self.jobs:
            raise QmpError(f"Job ID '{job_id}' already in use")
        job = Job(job_id, kind)
        self.jobs[job_id] = job
        self._set(job, "created")
        self._set(job, "running")
        job.task = asyncio.get_running_loop().create_task(self._run(job, work),
                                                          name=f"job {job_id}")
        return job

    async def _run(self, job: Job, work: Callable[[], Awaitable[Any]]) -> None:
        cancelled = False
        try:
            job.result = await work()
        except asyncio.CancelledError:
            job.error, cancelled = "the job was cancelled", True
        except Exception as exc:   # noqa: BLE001 - every failure is the job's error
            job.error = str(exc) or type(exc).__name__
        job.current_progress = job.total_progress
        if job.error is None:
            self._set(job, "waiting")
            self._set(job, "pending")
        else:
            self._set(job, "aborting")
        self._set(job, "concluded")
        if cancelled:
            raise asyncio.CancelledError

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise QmpError("Job not found")
        return job

    def _verb(self, job: Job, verb: str) -> None:
        if job.status not in _VERBS[verb]:
            raise QmpError(f"Job '{job.id}' in state '{job.status}' cannot accept command "
                           f"verb '{verb}'")

    def dismiss(self, job_id: str) -> None:
        """Remove a concluded job (its last JOB_STATUS_CHANGE says "null")."""
        job = self.get(job_id)
        self._verb(job, "dismiss")
        del self.jobs[job_id]
        self._set(job, "null")

    def query(self) -> list[dict[str, Any]]:
        return [job.info() for job in self.jobs.values()]

    async def wait_all(self) -> None:
        """Let the jobs still running finish (a VM that closes)."""
        tasks = [j.task for j in self.jobs.values() if j.task is not None and not j.task.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
