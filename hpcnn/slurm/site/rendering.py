"""Pure rendering of sbatch scripts: (profile, resources, launch) -> text. Runs no process.

Two consumers share it: the submitit executor (launch = submitit's pickled payload) and
``hpcnn render`` (launch = ``python -m hpcnn train``, for users who sbatch by hand).

Safety by construction: the Jinja environment refuses to print any value that is not
already ``Shell`` text. The only ways to make ``Shell`` text are ``q`` (shlex quoting),
``sbatch_line`` (#SBATCH lines, quoted for sbatch's own parser), ``comment`` (control
characters removed) and ``trusted`` (the profile's setup lines, site-owned by design).
A template that forgets to quote a value fails to render instead of emitting it.
"""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

import jinja2

from ...config import JobConfig, dump_yaml
from ...errors import EXIT_PREEMPTED, ConfigError, ProfileError
from ...files import safe_name
from .profiles import Profile, templates_dir
from .resources import Resources

SUBMITIT_TEMPLATE = "submitit.sbatch.j2"
LAUNCH_TEMPLATES = {"srun": "srun.sbatch.j2", "torchrun": "torchrun.sbatch.j2", "horovod": "horovod.sbatch.j2"}
_SBATCH_SAFE = re.compile(r"^[A-Za-z0-9_.,:/=@%+-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Shell(str):
    """Text that may be placed in a bash script as it is."""


class RenderError(ConfigError):
    """A template tried to print a value that was not quoted."""


def q(value: Any) -> Shell:
    """One shell word, whatever the value holds ($(...), backticks, quotes, ;, spaces, newlines)."""
    return Shell(shlex.quote(str(value)))


def comment(value: Any) -> Shell:
    """Text for a '#' comment: a newline would end the comment and start a command."""
    return Shell(_CONTROL.sub("?", str(value)))


def trusted(value: str) -> Shell:
    """A profile setup line: site-owned shell, written verbatim (documented as such)."""
    if "\n" in value or "\r" in value:
        raise ProfileError("a setup line must be one line", repr(value))
    return Shell(value)


def sbatch_quote(value: Any) -> str:
    """Quote for sbatch's #SBATCH parser: it groups with quotes and always honours backslash escapes."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ConfigError(f"#SBATCH values cannot contain a newline: {text!r}", None,
                          "sbatch reads one option per line; remove the newline")
    if _SBATCH_SAFE.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sbatch_line(key: str, value: Any) -> Shell:
    key = key.replace("_", "-")
    if not re.match(r"^[a-z][a-z0-9-]*$", key):
        raise ConfigError(f"not an sbatch option name: {key!r}")
    return Shell(f"#SBATCH --{key}" if value is True else f"#SBATCH --{key}={sbatch_quote(value)}")


def _finalize(value: Any) -> Any:
    if isinstance(value, Shell) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise RenderError(f"template printed an unquoted value {value!r}", "slurm_templates",
                      "pass it through |q (shell word), |comment or |trusted")


def render_template(name: str, context: dict) -> str:
    folder = templates_dir()
    if not (folder / name).is_file():
        raise ProfileError(f"sbatch template {name} not found", str(folder), "set HPCNN_TEMPLATES_DIR or reinstall")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
                             autoescape=False, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             finalize=_finalize)
    env.filters.update(q=q, comment=comment, trusted=trusted)
    return env.get_template(name).render(**context)


# ---------------------------------------------------------------- header (#SBATCH lines)

def mem_option(mem_gb: float) -> str:
    return f"{int(mem_gb)}G" if float(mem_gb).is_integer() else f"{int(round(mem_gb * 1024))}M"


def gpu_option(profile: Profile, gpus: int) -> dict[str, str]:
    """The GPU request as {option: value} in the profile's directive; empty for a CPU-only job."""
    if gpus <= 0:
        return {}
    if profile.gpu_directive == "gres":
        return {"gres": f"gpu:{profile.gpu_type}:{gpus}" if profile.gpu_type else f"gpu:{gpus}"}
    return {"gpus-per-node": f"{profile.gpu_type}:{gpus}" if profile.gpu_type else str(gpus)}


def sbatch_options(profile: Profile, res: Resources, *, output: str, error: str, tasks_per_node: int | None = None,
                   cpus_per_task: int | None = None, array: str | None = None, dependency: str | None = None,
                   signal_to_batch: bool = False) -> dict[str, Any]:
    """Every #SBATCH option as {name: value}; profile extras, then the job's extras, win last."""
    opts: dict[str, Any] = {
        "job-name": res.job_name, "nodes": res.nodes, "time": res.walltime,
        "ntasks-per-node": tasks_per_node or res.tasks_per_node, "cpus-per-task": cpus_per_task or res.cpus_per_task,
        "output": output, "error": error, "open-mode": "append",
        "signal": f"{'B:' if signal_to_batch else ''}{profile.signal}@{profile.signal_lead_s}",
    }
    optional = {"partition": res.partition, "account": res.account, "qos": res.qos, "constraint": res.constraint,
                "mem": mem_option(res.mem_gb) if res.mem_gb else None, "array": array, "dependency": dependency}
    opts.update((key, value) for key, value in optional.items() if value)  # the order is moot: lines are sorted
    opts.update(gpu_option(profile, res.gpus_per_node))
    opts["requeue" if profile.requeue else "no-requeue"] = True
    for extra in (profile.extra_sbatch, res.extra_sbatch):
        for key, value in extra.items():
            key = str(key).lstrip("-").replace("_", "-")
            if value is None or value is False:
                opts.pop(key, None)
            else:
                opts[key] = value
    return opts


def python_words(profile: Profile, python: str | Sequence[str] | None = None) -> Shell:
    chosen = python or profile.python or sys.executable
    words = [chosen] if isinstance(chosen, str) else list(chosen)
    return Shell(" ".join(q(w) for w in words))


def _source_label(profile: Profile) -> str:
    """Where the profile came from, relative to slurm_templates/ when shipped (stable across machines)."""
    if not profile.source:
        return "in memory"
    try:
        return str(Path(profile.source).resolve().relative_to(templates_dir().resolve()))
    except ValueError:
        return profile.source


def _common(profile: Profile, title: str, options: dict) -> dict:
    return {"title": comment(title), "profile_name": comment(profile.name),
            "profile_source": comment(_source_label(profile)),
            "directives": [sbatch_line(k, options[k]) for k in sorted(options)],
            "setup": [trusted(line) for line in profile.setup],
            "env": [(Shell(k), q(v)) for k, v in sorted(profile.env.items())],
            "srun_args": [q(a) for a in profile.srun_args],
            # validated to letters, '/', '.', '_', '-', '@', '+' and $VAR: double quotes let only $VAR expand
            "local_scratch": Shell(f'"{profile.local_scratch}"') if profile.local_scratch else None}


def check_slurm_path(path: str | Path, what: str) -> None:
    """Paths Slurm writes logs to: one line, no '%' and no backslash (file-name pattern syntax)."""
    text = str(path)
    if "\n" in text or "\r" in text:
        raise ConfigError(f"{what} contains a newline, which no #SBATCH line can hold", text.replace("\n", "\\n"),
                          "choose a directory name without newlines")
    if "%" in text or "\\" in text:
        # '%j' is expanded by Slurm, and one backslash anywhere switches off all of that expansion.
        raise ConfigError(f"{what} contains '%' or '\\', which Slurm reads as file-name pattern syntax", text,
                          "choose a directory name without '%' and '\\'")


# ---------------------------------------------------------------- the submitit script

def render_submitit(profile: Profile, res: Resources, *, folder: str | Path, python: str | Sequence[str] | None = None,
                    array_size: int | None = None, max_parallel: int | None = None,
                    dependency: str | None = None) -> str:
    """The script submitit submits: our header/setup, submitit's payload runner on every task."""
    folder = Path(folder)
    check_slurm_path(folder, "the submitit folder")
    job = "%A_%a" if array_size else "%j"
    throttle = f"%{min(max_parallel, array_size)}" if array_size and max_parallel else ""
    array = f"0-{array_size - 1}{throttle}" if array_size else None
    options = sbatch_options(profile, res, output=str(folder / f"{job}_0_log.out"),
                             error=str(folder / f"{job}_0_log.err"), array=array, dependency=dependency)
    context = _common(profile, f"hpcnn job {res.job_name} (submitted through submitit)", options)
    context.update(python=python_words(profile, python), folder=q(folder),
                   task_stdout=q(folder / f"{job}_%t_log.out"), task_stderr=q(folder / f"{job}_%t_log.err"))
    return render_template(SUBMITIT_TEMPLATE, context)


# ---------------------------------------------------------------- the hand-sbatch script

def _heredoc_delimiter(text: str) -> str:
    lines = set(text.splitlines())
    delimiter, n = "HPCNN_CONFIG_EOF", 0
    while delimiter in lines:
        n += 1
        delimiter = f"HPCNN_CONFIG_EOF_{n}"
    return delimiter


def render_job(cfg: JobConfig, profile: Profile, res: Resources, *, runs_dir: str | Path,
               run_dir: str | Path | None = None, python: str | Sequence[str] | None = None) -> str:
    """A self-contained script for `sbatch`: resolved config inline, one run dir per job id, self-requeue."""
    check_slurm_path(runs_dir, "train.runs_dir")
    if run_dir is not None:
        check_slurm_path(run_dir, "the run directory")
    kind = "horovod" if cfg.dist.backend == "horovod" else profile.launcher
    per_node = res.tasks_per_node
    tasks, cpus = (1, res.cpus_per_task * per_node) if kind in ("torchrun", "horovod") else (per_node, None)
    log_stem = Path(runs_dir) / f"{safe_name(res.job_name)}-%j"
    options = sbatch_options(profile, res, output=f"{log_stem}.out", error=f"{log_stem}.err",
                             tasks_per_node=tasks, cpus_per_task=cpus, signal_to_batch=kind == "horovod")
    config_text = dump_yaml(cfg).rstrip("\n")
    run_dir_expr = (q(run_dir) if run_dir is not None
                    else Shell(f'{q(Path(runs_dir) / (safe_name(cfg.name) + "-"))}"$SLURM_JOB_ID"'))
    context = _common(profile, f"hpcnn job {res.job_name} ({kind} launch)", options)
    context.update(python=python_words(profile, python), run_dir=run_dir_expr, config_yaml=Shell(config_text),
                   eof=Shell(_heredoc_delimiter(config_text)), requeue=profile.requeue,
                   max_requeues=int(res.max_requeues), exit_preempted=EXIT_PREEMPTED, nproc_per_node=int(per_node),
                   total_tasks=int(res.nodes * per_node), signal=Shell(profile.signal), stage_base=_stage_base(cfg))
    return render_template(LAUNCH_TEMPLATES[kind], context)


def _stage_base(cfg: JobConfig) -> Shell | None:
    """data.stage's directory as the script names it (hpcnn.data.staging.stage_base, in shell)."""
    if cfg.data.stage == "none":
        return None
    return Shell('"$HPCNN_LOCAL_SCRATCH"') if cfg.data.stage == "auto" else q(Path(cfg.data.stage).expanduser())


__all__ = ["RenderError", "Shell", "check_slurm_path", "comment", "gpu_option", "mem_option", "q", "render_job",
           "render_submitit", "render_template", "sbatch_line", "sbatch_options", "sbatch_quote", "trusted"]
