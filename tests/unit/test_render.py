"""Rendering is pure and safe: golden scripts per shipped profile, and hostile values stay inert.

Golden files live in tests/golden/. After an intended change to a template or profile, regenerate with
    HPCNN_REGEN_GOLDEN=1 .venv/bin/pytest tests/unit/test_render.py
and review the diff. The inline job config of hand scripts is compared separately (it follows the
config schema, not the templates), so goldens do not churn when a config default changes.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from hpcnn.config import dump_yaml, load_job
from hpcnn.errors import ConfigError
from hpcnn.slurm.site import rendering as R
from hpcnn.slurm.site.profiles import list_profiles, load_profile, profile_from_dict
from hpcnn.slurm.site.resources import resolve

from tests.helpers import REPO

GOLDEN = REPO / "tests" / "golden"
REGEN = os.environ.get("HPCNN_REGEN_GOLDEN") == "1"
PYTHON = "/opt/hpcnn/venv/bin/python"
FOLDER = Path("/scratch/runs/golden-20261123-120000-abcd/submitit")
RUNS = Path("/scratch/runs")
HEREDOC = re.compile(r"(<<'(HPCNN_CONFIG_EOF\w*)'\n)(.*?\n)(\2\n)", re.S)
HOSTILE = ["a b", "x$(touch {canary})", "y`touch {canary}`", "q'uote\"s", "semi;touch {canary}", "back\\slash",
           "hash # not a comment", "dollar $HOME ${PATH}", "glob *?[", "tab\tchar"]


def golden_config(profile):
    gpus = min(profile.max_gpus_per_node, 2)
    nodes = min(profile.max_nodes, 2)
    return load_job(None, ["name=golden", f"slurm.gpus_per_node={gpus}", f"slurm.nodes={nodes}",
                           "slurm.time=01:30:00", "slurm.max_requeues=2"])


def split_heredoc(text):
    """(script with the inline config replaced by a marker, the inline config)."""
    m = HEREDOC.search(text)
    assert m, "hand scripts carry the job config in a quoted heredoc"
    return text[:m.start(3)] + "<job config: dump_yaml(cfg)>\n" + text[m.end(3):], m.group(3)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"missing golden file {path}; create it with HPCNN_REGEN_GOLDEN=1"
    assert text == path.read_text(), f"{name} changed; if intended, regenerate with HPCNN_REGEN_GOLDEN=1 and review"


def render_case(profile, kind):
    cfg = golden_config(profile)
    res = resolve(cfg, profile)
    if kind == "submitit":
        return R.render_submitit(profile, res, folder=FOLDER, python=PYTHON), cfg
    if kind == "array":
        return R.render_submitit(profile, res, folder=FOLDER, python=PYTHON, array_size=5, max_parallel=2,
                                 dependency="afterany:41"), cfg
    return R.render_job(cfg, profile, res, runs_dir=RUNS, python=PYTHON), cfg


EXTRA_PROFILES = {
    "torchrun": {"name": "torchrun-site", "launcher": "torchrun", "signal": "TERM", "max_nodes": 4,
                 "max_gpus_per_node": 4, "gpu_directive": "gpus_per_node", "cpus_per_gpu": 8,
                 "setup": ["source /opt/site/env.sh"]},
    "cpu": {"name": "cpu-site", "max_gpus_per_node": 0, "max_nodes": 2, "cpus_per_task": 4, "mem_gb": 16,
            "requeue": False, "extra_sbatch": {"exclusive": True, "mail-type": "END,FAIL"}},
}


@pytest.mark.parametrize("name", sorted({"local", "generic", "nesi", "perlmutter"}))
@pytest.mark.parametrize("kind", ["submitit", "array", "job"])
def test_shipped_profiles_match_golden(name, kind):
    text, cfg = render_case(load_profile(name), kind)
    if kind == "job":
        text, inline = split_heredoc(text)
        assert inline == dump_yaml(cfg)
    check_golden(f"{name}-{kind}.sbatch", text)


@pytest.mark.parametrize("name", sorted(EXTRA_PROFILES))
def test_other_launchers_match_golden(name):
    text, cfg = render_case(profile_from_dict(EXTRA_PROFILES[name], f"test profile {name}"), "job")
    check_golden(f"{name}-job.sbatch", split_heredoc(text)[0])


def test_horovod_template_golden():
    profile = load_profile("generic")
    cfg = load_job(None, ["name=golden", "slurm.gpus_per_node=2", "slurm.nodes=2", "dist.backend=horovod"])
    text = R.render_job(cfg, profile, resolve(cfg, profile), runs_dir=RUNS, python=PYTHON)
    assert "horovodrun -np 4" in text and "--signal=B:USR2@120" in text
    check_golden("horovod-job.sbatch", split_heredoc(text)[0])


def test_directives_reflect_the_profile():
    text, _ = render_case(load_profile("nesi"), "submitit")
    assert "#SBATCH --gpus-per-node=A100:2" in text and '#SBATCH --account="<nesiNNNNN>"' in text
    assert "module load Python/3.11.6-foss-2023a" in text
    text, _ = render_case(load_profile("local"), "array")
    assert "#SBATCH --array=0-4%2" in text and "#SBATCH --gres=gpu:2" in text
    assert "%A_%a_%t_log.out" in text and "#SBATCH --signal=USR2@60" in text
    directives = [ln for ln in text.splitlines() if ln.startswith("#SBATCH")]
    assert directives == sorted(directives), "directives are sorted: deterministic output"


def test_render_is_deterministic_and_runs_no_process(monkeypatch):
    def no_process(*a, **k):
        raise AssertionError("render must not run a process")

    monkeypatch.setattr(subprocess, "run", no_process)
    monkeypatch.setattr(subprocess, "Popen", no_process)
    first = render_case(load_profile("local"), "job")[0]
    assert first == render_case(load_profile("local"), "job")[0]


# ---------------------------------------------------------------- quoting


def sbatch_parse(line: str) -> list[str]:
    """Our reading of sbatch's #SBATCH argument rules (Slurm's opt.c): quotes group, a backslash
    always escapes the next character, an unquoted '#' starts a comment."""
    args, cur, quote, escape, started = [], [], None, False, False
    for ch in line:
        if escape:
            cur.append(ch); escape = False; started = True
        elif ch == "\\":
            escape = True
        elif quote:
            if ch == quote:
                quote = None
            else:
                cur.append(ch)
        elif ch in "\"'":
            quote, started = ch, True
        elif ch == "#":
            break
        elif ch.isspace():
            if started or cur:
                args.append("".join(cur)); cur, started = [], False
        else:
            cur.append(ch); started = True
    if started or cur:
        args.append("".join(cur))
    return args


@pytest.mark.parametrize("value", [v.replace("{canary}", "/tmp/c") for v in HOSTILE] + ["plain-name_1.2", "gpu:A100:2"])
def test_sbatch_values_survive_sbatch_parsing(value):
    line = R.sbatch_line("job-name", value)
    assert sbatch_parse(line[len("#SBATCH "):]) == [f"--job-name={value}"]


def test_sbatch_values_cannot_hold_newlines():
    with pytest.raises(ConfigError, match="newline"):
        R.sbatch_line("job-name", "a\n#SBATCH --wrap=touch x")


def test_unquoted_value_in_a_template_fails_to_render(tmp_path, monkeypatch):
    (tmp_path / "bad.j2").write_text("echo {{ value }}\n")
    monkeypatch.setenv("HPCNN_TEMPLATES_DIR", str(tmp_path))
    with pytest.raises(R.RenderError, match="unquoted value"):
        R.render_template("bad.j2", {"value": "$(touch x)"})
    assert R.render_template("bad.j2", {"value": R.q("$(touch x)")}) == "echo '$(touch x)'\n"


def test_comment_values_cannot_break_out():
    assert "\n" not in R.comment("a\nrm -rf /")


@pytest.mark.parametrize("bad", ["/tmp/run%j", "/tmp/a\nb", "/tmp/back\\slash"])
def test_paths_slurm_cannot_hold_are_refused(bad):
    with pytest.raises(ConfigError):
        R.check_slurm_path(bad, "train.runs_dir")


# ---------------------------------------------------------------- hostile names under a real bash


def fake_commands(bin_dir: Path, record: Path) -> dict:
    """srun/scontrol stand-ins that record their argv (NUL-separated) and exit with $FAKE_RC."""
    bin_dir.mkdir()
    for name in ("srun", "scontrol"):
        script = bin_dir / name
        script.write_text(f'#!/bin/bash\nprintf "%s\\0" {name} "$@" >> {shlex.quote(str(record))}\n'
                          f'printf "\\n" >> {shlex.quote(str(record))}\n'
                          f'[ -n "${{FAKE_SUMMARY:-}}" ] && echo \'{{"status": "preempted"}}\' > "$FAKE_SUMMARY"\n'
                          f'[ {name} = srun ] && exit "${{FAKE_RC:-0}}"\n'
                          f'[ "$1" = show ] && echo "JobId=4242 JobState=${{FAKE_STATE:-RUNNING}} Reason=None"\n'
                          'exit 0\n')
        script.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}


def calls(record: Path) -> list[list[str]]:
    if not record.exists():
        return []
    return [line.strip("\0").split("\0") for line in record.read_text().split("\0\n") if line.strip("\0")]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_names_are_inert_in_hand_scripts(tmp_path, hostile):
    canary = tmp_path / "CANARY"
    value = hostile.replace("{canary}", str(canary))
    runs = tmp_path / f"runs {value}".replace("\\", "")  # a backslash in a log path disables %j (refused)
    cfg = load_job(None)
    cfg.name = cfg.slurm.job_name = value
    profile = load_profile("local")
    script = tmp_path / "job.sbatch"
    script.write_text(R.render_job(cfg, profile, resolve(cfg, profile), runs_dir=runs, python="python3"))
    record = tmp_path / "calls"
    env = {**os.environ, **fake_commands(tmp_path / "bin", record), "FAKE_RC": "0"}
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.glob("CANARY*")), "a hostile value was executed"
    run_dir = runs / f"{R.safe_name(value)}-4242"
    srun = calls(record)[0]
    assert srun[srun.index("--run-dir") + 1] == str(run_dir)
    assert yaml.safe_load((run_dir / "config.submitted.yaml").read_text())["name"] == value


def test_hostile_folder_is_inert_in_submitit_scripts(tmp_path):
    folder = tmp_path / "x$(touch CANARY) `touch CANARY2` 'q' ;touch CANARY3" / "submitit"
    profile = load_profile("local")
    cfg = load_job(None)
    script = tmp_path / "job.sbatch"
    script.write_text(R.render_submitit(profile, resolve(cfg, profile), folder=folder, python="python3"))
    record = tmp_path / "calls"
    env = {**os.environ, **fake_commands(tmp_path / "bin", record)}
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.rglob("CANARY*"))
    srun = calls(record)[0]
    assert srun[-1] == str(folder) and srun[-4:-1] == ["-u", "-m", "submitit.core._submit"]


@pytest.mark.parametrize("rc, restarts, summary, state, requeued, exit_code", [
    (3, "0", False, "RUNNING", True, 0), (3, "2", False, "RUNNING", False, 3), (0, "0", False, "RUNNING", False, 0),
    (1, "0", False, "RUNNING", False, 1),
    (1, "0", True, "RUNNING", True, 0),  # torchrun exits with its own code: the fresh preempted summary decides
    (3, "0", False, "CANCELLED", False, 3),  # scancel's SIGTERM also checkpoints: a cancelled job stays cancelled
])
def test_hand_script_requeues_itself_only_after_a_checkpoint(tmp_path, rc, restarts, summary, state, requeued,
                                                             exit_code):
    profile = load_profile("local")
    cfg = load_job(None, ["slurm.max_requeues=2"])
    script = tmp_path / "job.sbatch"
    script.write_text(R.render_job(cfg, profile, resolve(cfg, profile), runs_dir=tmp_path / "runs", python="python3"))
    record = tmp_path / "calls"
    env = {**os.environ, **fake_commands(tmp_path / "bin", record), "FAKE_RC": str(rc),
           "SLURM_RESTART_COUNT": restarts, "FAKE_STATE": state}
    if summary:
        env["FAKE_SUMMARY"] = str(tmp_path / "runs" / "default-4242" / "summary.json")
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == exit_code, proc.stderr
    assert (["scontrol", "requeue", "4242"] in calls(record)) == requeued


def test_every_shipped_profile_renders_every_launch():
    for name in list_profiles():
        profile = load_profile(name)
        for kind in ("submitit", "array", "job"):
            text, _ = render_case(profile, kind)
            assert text.startswith("#!/bin/bash\n") and text.endswith("\n")
            assert subprocess.run(["bash", "-n"], input=text, text=True, timeout=10).returncode == 0
