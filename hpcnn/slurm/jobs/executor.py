"""submitit, with hpcnn's templates writing the script.

``HpcnnExecutor`` keeps submitit's machinery (pickled payload, job folder, result files,
job objects) and replaces only the script text: the profile's header, setup lines, srun
flags and signal come from ``rendering.render_submitit``. It also submits a list of
payloads as one Slurm array. submitit itself is imported only when something is submitted.
"""
from __future__ import annotations

import itertools
import os
import re
import uuid
from pathlib import Path
from typing import Any, Sequence

from ...errors import SubmissionError
from ..site.profiles import Profile
from ..site.rendering import python_words, render_submitit
from ..site.resources import Resources

LOG_PATTERN = "{job_id}_{rank}_log.{stream}"
_ARRAY_LINE = re.compile(r"^#SBATCH --array=.*$", re.M)


def index_spec(indices: Sequence[int], max_parallel: int | None = None) -> str:
    """Slurm's --array value for these indices: ``0-3``, ``2,5-7``, with ``%K`` when throttled."""
    ordered = sorted(set(indices))
    parts = []
    for _, run in itertools.groupby(enumerate(ordered), lambda pair: pair[1] - pair[0]):  # a run keeps i - position
        first, *rest = [i for _, i in run]
        parts.append(f"{first}-{rest[-1]}" if rest else str(first))
    throttle = f"%{min(max_parallel, len(ordered))}" if max_parallel else ""
    return ",".join(parts) + throttle


def with_indices(script: str, indices: Sequence[int], max_parallel: int | None = None) -> str:
    """A rendered array script whose ``#SBATCH --array=`` line runs exactly these indices."""
    return _ARRAY_LINE.sub(f"#SBATCH --array={index_spec(indices, max_parallel)}", script)


def _executor_class():
    """Built on first use: submitit's module is imported only when something is submitted."""
    from submitit.core import utils as sutils
    from submitit.slurm.slurm import SlurmExecutor, SlurmJob

    class HpcnnExecutor(SlurmExecutor):
        """submitit's SlurmExecutor whose script text comes from hpcnn's templates."""

        def __init__(self, folder, profile: Profile, resources: Resources, python=None):
            super().__init__(folder, max_num_timeout=resources.max_requeues, python=python_words(profile, python))
            self.profile, self.resources, self._python = profile, resources, python
            self.array: dict[str, Any] = {}
            self.update_parameters(time=resources.time_min, nodes=resources.nodes,
                                   ntasks_per_node=resources.tasks_per_node)

        def _make_submission_file_text(self, command: str, uid: str) -> str:
            text = render_submitit(self.profile, self.resources, folder=self.folder, python=self._python,
                                   array_size=self.array.get("size"), max_parallel=self.array.get("max_parallel"),
                                   dependency=self.array.get("dependency"))
            indices = self.array.get("indices")
            return text if indices is None else with_indices(text, indices, self.array.get("max_parallel"))

        def _pickle(self, payload: Any, name: str) -> Path:
            """``payload`` pickled as submitit pickles it, into submitit's folder for not yet numbered jobs."""
            folder = sutils.JobPaths.get_first_id_independent_folder(self.folder)
            folder.mkdir(parents=True, exist_ok=True)
            delayed = sutils.DelayedSubmission(payload)
            delayed.set_timeout(self.resources.time_min, self.max_num_timeout)
            delayed.dump(folder / name)
            return folder / name

        def _submit_array(self, **array: Any):
            """One sbatch of an array script rendered with ``array`` (size, indices, max_parallel, dependency)."""
            self.array = array
            try:
                return self._submit_command(self._submitit_command_str)
            finally:
                self.array = {}

        def submit_shared(self, payload: Any, indices: Sequence[int], max_parallel=None, dependency=None):
            """One pickled payload for a whole array (tasks ``indices``, e.g. 3,7,12): (array id, script path).

            submitit's runner loads ``<array>_<index>_submitted.pkl``; each is a hard link to the one
            payload, which picks its task from SLURM_ARRAY_TASK_ID. 10,000 links cost far less
            than 10,000 pickles of a full config (and far less than symbolic links on ext4).
            """
            shared = self._pickle(payload, f"array-{uuid.uuid4().hex}.pkl")
            first = self._submit_array(size=len(indices), indices=list(indices), max_parallel=max_parallel,
                                       dependency=dependency)
            array_id = first.job_id.split("_")[0]
            for i in indices:
                os.link(shared, shared.parent / f"{array_id}_{i}_submitted.pkl")
            return array_id, first.paths.submission_file

        def submit_as_array(self, payloads: Sequence[Any], max_parallel=None, dependency=None) -> list:
            """Always one array (even of one task), so ids are uniformly ARRAY_INDEX."""
            pickles = [self._pickle(payload, f"{uuid.uuid4().hex}.pkl") for payload in payloads]
            first = self._submit_array(size=len(payloads), max_parallel=max_parallel, dependency=dependency)
            tasks = list(range(first.num_tasks))
            jobs = [SlurmJob(folder=self.folder, job_id=f"{first.job_id}_{i}", tasks=tasks)
                    for i in range(len(payloads))]
            for job, path in zip(jobs, pickles):
                job.paths.move_temporary_file(path, "submitted_pickle")
            return jobs

    return HpcnnExecutor


def make_executor(folder: Path, profile: Profile, res: Resources, python=None):
    try:
        return _executor_class()(folder, profile, res, python)
    except RuntimeError as err:  # submitit: 'Could not detect "srun"'
        raise SubmissionError(f"cannot submit from here: {err}", hint="run on a Slurm login node, or use --dry-run "
                                                                      "/ `hpcnn render` to only write the script")


def submitted(fn, what: str):
    """Run a submitit submission; its failures become SubmissionError (with sbatch's message)."""
    try:
        return fn()
    except SubmissionError:
        raise
    except Exception as err:  # submitit raises FailedJobError / FailedSubmissionError with sbatch's output
        raise SubmissionError(f"{what}: {str(err).strip().splitlines()[-1] if str(err).strip() else err}",
                              hint="the script is in the run directory; `sbatch --test-only` it to see why") from err


__all__ = ["LOG_PATTERN", "index_spec", "make_executor", "submitted", "with_indices"]
