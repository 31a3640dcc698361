"""The one exception hierarchy users see.

Every error says *what* went wrong, *where* (file, dotted key, path, rank, job id)
and, when we know one, a *hint* to fix it. The CLI prints ``str(err)`` as one line
and exits with code 2; ``--debug`` adds the traceback.
"""
from __future__ import annotations

# Exit codes of `hpcnn` and of every job it runs (one home: the CLI, the Slurm payload and the
# sbatch templates all read them from here).
EXIT_OK = 0
EXIT_FAILED = 1       # an unexpected exception (a bug, or something hpcnn did not foresee)
EXIT_USAGE = 2        # an HpcnnError: bad config, missing data, impossible request — fix and rerun
EXIT_PREEMPTED = 3    # stopped by a preemption/timeout signal after writing a checkpoint: resume it
EXIT_INTERRUPTED = 130


class HpcnnError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    exit_code = EXIT_USAGE

    def __init__(self, what: str, where: str | None = None, hint: str | None = None):
        self.what, self.where, self.hint = what, where, hint
        super().__init__(self.format())

    def format(self) -> str:
        text = self.what
        if self.where:
            text += f" ({self.where})"
        if self.hint:
            text += f" — hint: {self.hint}"
        return text


class ConfigError(HpcnnError):
    """A job config, override or sweep is invalid."""


class ProfileError(HpcnnError):
    """A Slurm site profile is invalid or missing."""


class ResourceError(HpcnnError):
    """A resource request does not fit the site profile."""


class SubmissionError(HpcnnError):
    """A scheduler command failed; carries argv, exit code and output."""

    def __init__(self, what: str, argv=None, returncode=None, stdout="", stderr="", hint=None):
        self.argv = list(argv or [])
        self.returncode = returncode
        self.stdout = stdout or ""
        self.stderr = stderr or ""
        where = None
        if argv:
            where = f"command {' '.join(self.argv)!r} exited {returncode}"
            detail = (self.stderr or self.stdout).strip()
            if detail:
                where += f": {detail.splitlines()[-1]}"
        super().__init__(what, where, hint)


class DatasetError(HpcnnError):
    """A data set is missing, unreadable or corrupt."""


class CheckpointError(HpcnnError):
    """No usable checkpoint could be loaded."""


class WorldError(HpcnnError):
    """The launch is inconsistent (ranks, tasks, master address)."""


class DistributedError(HpcnnError):
    """A rank died or a collective timed out during a distributed run."""


class WeightsError(HpcnnError):
    """A pretrained-weights download failed or delivered other bytes than its name promises."""


class StorageError(HpcnnError, OSError):
    """A file could not be written: the file system is full or over quota, or the place is not writable.

    Raised by ``hpcnn.files`` after the partial file is removed, so whatever was there before is intact.
    Also an ``OSError`` (``errno``/``filename`` of the cause), so code that tolerates a failed optional
    write with ``except OSError`` (a cache, a progress file) goes on tolerating it.
    """

    def __str__(self) -> str:
        return self.format()


class RunDirBusy(HpcnnError):
    """Another job holds the run directory (``hpcnn.rundir_lock``): two writers would mix its files."""
