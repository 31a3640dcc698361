"""Study files, placement flags, the efficiency arithmetic and the report, on synthetic point records."""
from __future__ import annotations

import csv
import io
import json
import textwrap

import pytest

from hpcnn.errors import ConfigError
from hpcnn.scale import study as studies
from hpcnn.scale.check import check_report
from hpcnn.scale.collect import add_predictions, step_profile
from hpcnn.scale.model import Link, Links
from hpcnn.scale.plots import PLOTS, write_plots
from hpcnn.scale.points import add_scaling, placement_flags, point_record
from hpcnn.scale.report import csv_text, format_table

from tests.helpers import TINY, run_hpcnn


def write(tmp_path, text: str, name: str = "study.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path, text: str):
    return studies.load_study(write(tmp_path, text))


BASE = """\
mode: strong
batch_size: 64
overrides: [data.source=digits]
points: [{nodes: 1, tasks_per_node: 1}, {nodes: 1, tasks_per_node: 2}, {nodes: 2, tasks_per_node: 1}]
"""


@pytest.mark.parametrize("text, message", [
    ("points: [{nodes: 1}]\n", "missing required key 'mode'"),
    ("mode: medium\npoints: [{nodes: 1}]\n", "'mode' must be one of strong, weak"),
    ("mode: weak\npoins: [{nodes: 1}]\n", "unknown key 'poins'.*did you mean 'points'"),
    ("mode: weak\npoints: [{nodes: 1}]\nbench: {step: 3}\n", "unknown key 'bench.step'.*did you mean 'bench.steps'"),
    ("mode: weak\npoints: [{nodes: 1, tasks_per_node: 0}]\n", "'points\\[0\\].tasks_per_node' must be a whole number"),
    ("mode: weak\n", "a study needs points"),
    ("mode: weak\npoints: [{nodes: 2}, {nodes: 2, tasks_per_node: 1}]\n", "'points\\[1\\]' repeats point 2x1"),
    ("mode: weak\npoints: [{nodes: 1, gpus_per_node: 2, tasks_per_node: 1}]\n", "one rank per GPU"),
    ("mode: weak\npoints: [{nodes: 1}, {nodes: 1, gpus_per_node: 2}]\n", "mixes GPU points and CPU points"),
    ("mode: weak\npoints: [{nodes: 1}]\nslurm: {nodes: 2}\n", "'slurm.nodes' is set by each point"),
    ("mode: weak\npoints: [{nodes: 1}]\nslurm: {tme: '00:10:00'}\n", "unknown key 'slurm.tme'.*slurm.time"),
    ("mode: weak\npoints: [{nodes: 1}]\nreference: {images_per_second: {4x1: 10}}\n",
     "'reference.images_per_second.4x1' names no point"),
    ("mode: weak\npoints: [{nodes: 1}]\nreference: {tolerance: 1.5}\n", "'reference.tolerance' must be in"),
    ("mode: weak\npoints: [{nodes: 1}]\nbench: {data: imagined}\n", "'bench.data' must be one of"),
    ("mode: weak\npoints: [{nodes: 1}]\nmodel: {algorithm: butterfly}\n", "'model.algorithm' must be one of"),
    ("mode: weak\npoints: [{nodes: 1}]\nmodel: {links: {inter: {alpha_s: 1}}}\n", "links.inter"),
    ("mode: weak\npoints: [{nodes: 1}]\nconfig: nowhere.yaml\n", "'config' file not found"),
    ("mode: weak\npoints: [{nodes: 1}]\nsizes: {gpus_per_node: [1], tasks_per_node: [2]}\n", "both gpus_per_node"),
])
def test_study_file_errors_name_the_key_and_the_file(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as err:
        load(tmp_path, text)
    assert str(tmp_path / "study.yaml") in str(err.value)


def test_strong_scaling_batch_must_divide_among_every_points_ranks(tmp_path):
    spec = load(tmp_path, "mode: strong\nbatch_size: 64\npoints: [{nodes: 1}, {nodes: 1, tasks_per_node: 3}]\n")
    with pytest.raises(ConfigError, match=r"global batch 64 does not divide among the 3 ranks of point 1x3 "
                                          r"\('points\[1\]'\)"):
        studies.points(spec)


def test_points_batches_and_sizes_shorthand(tmp_path):
    spec = load(tmp_path, "mode: strong\nbatch_size: 64\nsizes: {gpus_per_node: [1, 2, 4], nodes: [2, 4]}\n")
    pts = studies.points(spec)
    assert [(p.key, p.ranks, p.batch_per_rank, p.global_batch) for p in pts] == [
        ("1x1", 1, 64, 64), ("1x2", 2, 32, 64), ("1x4", 4, 16, 64), ("2x4", 8, 8, 64), ("4x4", 16, 4, 64)]
    assert all(p.gpus for p in pts) and pts[3].slurm == {"nodes": 2, "gpus_per_node": 4, "tasks_per_node": 4}
    weak = load(tmp_path, "mode: weak\nbatch_size: 16\nsizes: {tasks_per_node: [1, 2], nodes: [3]}\n")
    assert [(p.key, p.batch_per_rank, p.global_batch, p.gpus) for p in studies.points(weak)] == [
        ("1x1", 16, 16, False), ("1x2", 16, 32, False), ("3x2", 16, 96, False)]
    assert studies.points(weak)[1].label == "1 node x 2 tasks"


def test_point_config_carries_batch_size_placement_and_shared_slurm_keys(tmp_path):
    spec = load(tmp_path, BASE + "slurm: {time: '00:10:00'}\n")
    base = studies.base_config(spec)
    pts = {p.key: p for p in studies.points(spec, base)}
    cfg = studies.point_config(spec, pts["1x2"], base, tmp_path / "subs")
    assert (cfg.train.batch_scope, cfg.train.batch_size) == ("global", 64)
    assert (cfg.slurm.nodes, cfg.slurm.tasks_per_node, cfg.slurm.gpus_per_node, cfg.slurm.time) == \
        (1, 2, 0, "00:10:00")
    assert cfg.train.runs_dir == str(tmp_path / "subs") and cfg.data.source == "digits"
    other = studies.point_config(spec, pts["1x2"], base, tmp_path / "elsewhere")
    assert studies.fingerprint(cfg, spec) == studies.fingerprint(other, spec)  # the directory is not what it measures
    changed = load(tmp_path, BASE + "bench: {steps: 7}\n")
    assert studies.fingerprint(cfg, changed) != studies.fingerprint(cfg, spec)
    weak = load(tmp_path, BASE.replace("strong", "weak"))
    wcfg = studies.point_config(weak, studies.points(weak)[1], studies.base_config(weak), tmp_path)
    assert (wcfg.train.batch_scope, wcfg.train.batch_size) == ("per_rank", 64)


def test_study_directory_default_and_explicit(tmp_path):
    spec = load(tmp_path, BASE + "name: mine\noverrides: [train.runs_dir=" + str(tmp_path / "r") + "]\n")
    assert studies.study_dir(spec) == tmp_path / "r" / "scale-mine"
    spec = load(tmp_path, BASE + f"dir: {tmp_path / 'here'}\n")
    assert studies.study_dir(spec) == tmp_path / "here"


def test_the_shipped_example_studies_load(tmp_path):
    from tests.helpers import REPO

    found = sorted((REPO / "jobs" / "scaling").glob("*.yaml"))
    assert found
    for path in found:
        spec = studies.load_study(path)
        assert studies.points(spec)


# ---------------------------------------------------------------- placement and efficiency

def entry(key: str, nodes: int, per_node: int, batch: int = 32) -> dict:
    return {"key": key, "label": key, "nodes": nodes, "per_node": per_node, "gpus": False, "ranks": nodes * per_node,
            "batch_per_rank": batch, "global_batch": batch * nodes * per_node}


def bench(ips: float, hosts: list[str], compute=0.02, grad=4e6, buckets=None, rest=0.01) -> dict:
    """``rest``: the measured step beyond forward+backward (data wait 0.003 + optimizer 0.009 = 0.012 by the split)."""
    return {"images_per_second": {"median": ips, "min": ips * 0.9, "max": ips * 1.1}, "world_size": len(hosts),
            "hosts_per_rank": hosts, "nodes": sorted(set(hosts)),
            "step_time_s": {"total": compute + rest, "data": 0.003, "compute": compute, "comm": 0.0,
                            "optimizer": 0.009}, "gradient_bytes": grad, "bucket_bytes": buckets or []}


def test_placement_as_asked_has_no_flags():
    assert placement_flags(1, 2, 2, ["n1", "n1"], None) == []
    assert placement_flags(2, 1, 2, ["n1", "n2"], None) == []
    assert placement_flags(2, 1, None, None, ["n2", "n3"]) == []


def test_one_node_two_tasks_spread_over_two_nodes_is_flagged():
    flags = placement_flags(1, 2, 2, ["n1", "n2"], None)
    assert flags == ["ran on 2 node(s) (n1, n2), asked for 1", "ranks per node n1:1, n2:1, asked for 2"]


def test_two_nodes_asked_one_used_and_wrong_world_size_are_flagged():
    assert placement_flags(2, 1, 2, ["n1", "n1"], None) == ["ran on 1 node(s) (n1), asked for 2",
                                                            "ranks per node n1:2, asked for 1"]
    assert placement_flags(1, 2, 1, ["n1"], None)[0] == "ran 1 ranks, asked for 2"
    assert placement_flags(2, 1, None, None, ["n1"]) == ["ran on 1 node(s) (n1), asked for 2"]  # Slurm's list only


def test_point_records_carry_nodes_jobs_and_flags():
    rec = point_record(entry("1x2", 1, 2), "done", bench(180.0, ["n1", "n2"]), "n[1-2]", "", ["5_0", "7_0"])
    assert rec["flags"] and rec["nodes_ran"] == ["n1", "n2"] and rec["job_id"] == "7_0"
    assert rec["job_ids"] == ["5_0", "7_0"] and rec["images_per_second"] == 180.0
    pending = point_record(entry("2x1", 2, 1), "pending", None, "", "pending: Resources", ["9_0"])
    assert pending["images_per_second"] is None and pending["flags"] == [] and pending["nodes_ran"] == []
    from_slurm = point_record(entry("2x1", 2, 1), "done", {"images_per_second": {"median": 1.0}}, "n[2-3]")
    assert from_slurm["nodes_ran"] == ["n2", "n3"]


def test_efficiency_is_throughput_over_n_times_single_rank_and_flagged_points_are_not_the_baseline():
    recs = [point_record(entry("1x1", 1, 1), "done", bench(100.0, ["n1"])),
            point_record(entry("1x2", 1, 2), "done", bench(180.0, ["n1", "n1"])),
            point_record(entry("2x1", 2, 1), "done", bench(150.0, ["n1", "n1"])),  # flagged: one node used
            point_record(entry("2x2", 2, 2), "failed", None, reason="FAILED (exit 1:0): boom")]
    base = add_scaling(recs)
    assert base["key"] == "1x1"
    assert [r["speedup"] for r in recs[:3]] == [pytest.approx(1.0), pytest.approx(1.8), pytest.approx(1.5)]
    assert [r["efficiency"] for r in recs[:3]] == [pytest.approx(1.0), pytest.approx(0.9), pytest.approx(0.75)]
    assert recs[3]["efficiency"] is None and recs[2]["flags"]
    recs[0]["flags"] = ["ran on 2 node(s)"]  # a flagged 1-rank point: the next smallest unflagged one is the base
    assert add_scaling(recs)["key"] == "1x2"
    assert recs[1]["efficiency"] == pytest.approx(1.0) and recs[0]["efficiency"] == pytest.approx(100 / 90)


def synthetic_report(tmp_path, spec_text: str = BASE, rest: float = 0.01):
    spec = load(tmp_path, spec_text)
    recs = [point_record(entry("1x1", 1, 1, 64), "done", bench(100.0, ["n1"], compute=0.5, rest=rest)),
            point_record(entry("1x2", 1, 2, 32), "done", bench(180.0, ["n1", "n2"], buckets=[3e6, 1e6])),
            point_record(entry("2x1", 2, 1, 32), "failed", None, reason="CANCELLED: killed", job_ids=["3_0"])]
    base = add_scaling(recs)
    links = Links(Link(1e-4, 1e8))
    extra = add_predictions(recs, base, spec, links)
    report = {"study": "t", "mode": spec.mode, "batch": "strong scaling: global batch 64 fixed",
              "efficiency": "throughput(N) / (N x throughput(1))", "baseline": base["key"],
              "model": {"algorithm": "ring", "overlap": True, "links": links.to_dict(), "links_source": "test",
                        "active": True}, "points": recs, "predictions": extra}
    return spec, report


def test_predictions_start_from_the_one_rank_point_with_measured_buckets(tmp_path):
    spec, report = synthetic_report(tmp_path, BASE + "model: {gpus: [64, 1024]}\n")
    profile = step_profile(report["points"][0], spec, report["points"])
    assert profile.bucket_bytes == (3e6, 1e6) and profile.batch_per_rank == 64
    # the split's optimizer (0.009) is more than total - compute - data (0.01 - 0.003): the optimizer counts
    assert (profile.compute_s, profile.data_s, profile.optimizer_s) == (0.5, 0.003, 0.009)
    one, two, _ = (r["predicted"] for r in report["points"])
    assert one["efficiency"] == 1.0 and two["ranks"] == 2 and 0 < two["efficiency"] < 1
    # strong scaling over 2 ranks: forward+backward and data wait halve, the optimizer step does not
    assert (two["compute_s"], two["data_s"], two["optimizer_s"]) == (0.25, 0.0015, 0.009)
    assert two["step_s"] == pytest.approx(0.25 + 0.0015 + 0.009 + two["exposed_comm_s"])
    assert [p["ranks"] for p in report["predictions"]] == [64, 1024]
    # a measured step with more beyond forward+backward than data + optimizer: the rest is a per-step constant
    spec, report = synthetic_report(tmp_path, BASE, rest=0.02)
    profile = step_profile(report["points"][0], spec, report["points"])
    assert (profile.data_s, profile.optimizer_s) == (0.003, pytest.approx(0.017))
    assert profile.step_s == pytest.approx(report["points"][0]["step_time_s"]["total"])


def test_old_study_files_name_the_binomial_allreduce_tree_and_auto_reports_its_choice(tmp_path):
    spec = load(tmp_path, BASE + "model: {algorithm: tree}\n")
    assert spec.model.algorithm == "binomial"
    assert studies.study_from_dict(studies.to_data(spec)).model.algorithm == "binomial"
    spec, report = synthetic_report(tmp_path, BASE + "model: {algorithm: auto, gpus: [64]}\n")
    report["model"]["algorithm"] = spec.model.algorithm
    (far,) = report["predictions"]
    assert far["algorithms"] == {"rabenseifner": 2}  # 3 MB and 1 MB buckets, a flat allreduce over 64 ranks
    assert "model: auto (the fastest variant per bucket) allreduce" in format_table(report)
    assert "allreduce rabenseifner x2" in format_table(report)


def test_table_csv_and_plots(tmp_path):
    _, report = synthetic_report(tmp_path)
    table = format_table(report)
    assert "strong scaling" in table and "efficiency = throughput(N) / (N x throughput(1))" in table
    assert "1x2 !" in table and "! 1x2: placement differs from the request: ran on 2 node(s)" in table
    assert "2x1: CANCELLED: killed" in table
    rows = list(csv.DictReader(io.StringIO(csv_text(report["points"]))))
    assert [r["key"] for r in rows] == ["1x1", "1x2", "2x1"]
    assert float(rows[1]["efficiency"]) == pytest.approx(0.9) and rows[1]["flags"].startswith("ran on 2 node(s)")
    assert rows[2]["status"] == "failed" and rows[2]["images_per_second"] == "" and rows[2]["job_ids"] == "3_0"
    paths = write_plots(report, tmp_path)
    assert [p.name for p in paths] == list(PLOTS)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in paths)


def test_check_fails_points_below_the_reference_missing_or_misplaced(tmp_path):
    spec, report = synthetic_report(
        tmp_path, BASE + "reference: {tolerance: 0.1, images_per_second: {1x1: 105, 1x2: 100, 2x1: 50}, "
                         "efficiency: {1x1: 1.2}}\n")
    results = {(r["point"], r["figure"]): r for r in check_report(report, spec)}
    assert results[("1x1", "images_per_second")]["ok"]                      # 100 >= 105 * 0.9
    misplaced = results[("1x2", "images_per_second")]
    assert not misplaced["ok"] and "placement" in misplaced["why"]
    assert not results[("2x1", "images_per_second")]["ok"] and "no measurement (failed" in \
        results[("2x1", "images_per_second")]["why"]
    assert not results[("1x1", "efficiency")]["ok"] and "< 1.08" in results[("1x1", "efficiency")]["why"]


def test_cli_reports_a_bad_study_in_one_line(tmp_path):
    path = write(tmp_path, "mode: weak\npoints: [{nodes: 1}]\nbench: {stepz: 3}\n")
    proc = run_hpcnn("scale", str(path), timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "unknown key 'bench.stepz'" in proc.stderr and str(path) in proc.stderr
    proc = run_hpcnn("scale", "collect", str(tmp_path), timeout=60)
    assert proc.returncode == 2 and "not a study directory" in proc.stderr


def test_dry_run_preflights_every_point_and_submits_nothing(tmp_path):
    overrides = ", ".join(json.dumps(o) for o in TINY + [f"train.runs_dir={tmp_path / 'runs'}"])
    path = write(tmp_path, BASE.replace("overrides: [data.source=digits]", f"overrides: [{overrides}]")
                 + "profile: local\n")
    proc = run_hpcnn("scale", str(path), "--dry-run", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "would submit 3 point(s) (1x1, 1x2, 2x1) as 3 array(s)" in proc.stderr
    assert proc.stdout.count("#SBATCH --array=0-0") == 3 and "--ntasks-per-node=2" in proc.stdout
    assert not (tmp_path / "runs" / "scale-study" / "study.json").exists()
    bad = write(tmp_path, BASE + "profile: local\nslurm: {time: '30-00:00:00'}\n", "bad.yaml")
    proc = run_hpcnn("scale", str(bad), "--dry-run", timeout=120)
    assert proc.returncode == 2 and "exceeds the site limit" in proc.stderr and "task 0" in proc.stderr


def test_only_missing_failed_or_changed_points_are_submitted_again():
    from hpcnn.scale.runner import _needs_submitting
    from hpcnn.scale.state import PointState

    attempt = {"job_id": "1_0", "fingerprint": "abc"}
    assert _needs_submitting(PointState("1x1", "missing"), "abc")
    assert _needs_submitting(PointState("1x1", "failed", attempt, reason="CANCELLED"), "abc")
    assert not _needs_submitting(PointState("1x1", "running", attempt), "abc")
    assert not _needs_submitting(PointState("1x1", "pending", attempt), "new")
    assert not _needs_submitting(PointState("1x1", "done", attempt), "abc")
    assert _needs_submitting(PointState("1x1", "done", attempt), "new")  # the study changed what it measures


def test_the_worked_example_model_column_of_docs_scaling():
    """docs/scaling.md's local_cpu table: its model columns are what collect computes from its measured figures."""
    from hpcnn.scale.model import links_from_dict
    from hpcnn.slurm.site.profiles import load_profile

    def record(key, nodes, per_node, batch, ips, hosts, total, compute):
        step = {"total": total, "data": 0.0, "compute": compute, "comm": 0.0, "optimizer": 0.0007}
        measured = {"images_per_second": {"median": ips, "min": ips, "max": ips}, "world_size": nodes * per_node,
                    "hosts_per_rank": hosts, "nodes": sorted(set(hosts)), "step_time_s": step,
                    "gradient_bytes": 32776, "bucket_bytes": [32776] if nodes * per_node > 1 else []}
        return point_record({**entry(key, nodes, per_node, batch), "global_batch": 64}, "done", measured)

    recs = [record("1x1", 1, 1, 64, 3391.1, ["n1"], 64 / 3391.1, 0.0181),
            record("1x2", 1, 2, 32, 3933.8, ["n1", "n1"], 0.0163, 0.0119),
            record("2x1", 2, 1, 32, 5933.1, ["n1", "n2"], 0.0108, 0.0044)]
    spec = studies.study_from_dict({"mode": "strong", "batch_size": 64, "points": [{"nodes": 1}],
                                    "model": {"gpus": [4, 8, 16, 64]}})
    local = links_from_dict(load_profile("local").links)  # the study's links: the local profile's
    extra = add_predictions(recs, add_scaling(recs), spec, local)
    assert [(round(r["predicted"]["images_per_second"], 1), round(r["predicted"]["efficiency"], 2))
            for r in recs] == [(3391.1, 1.0), (5406.4, 0.8), (6238.6, 0.92)]
    assert [(p["ranks"], round(p["images_per_second"], 1)) for p in extra] == [
        (4, 8259.6), (8, 10118.7), (16, 9336.1), (64, 4013.4)]
