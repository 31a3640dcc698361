"""Every shipped job file reaches the accuracy its docs state.

The table "Every shipped job's accuracy" in docs/lessons.md is the source: one row per file in jobs/
and jobs/lessons/ with the setting this test runs it at (as shipped, or shortened by overrides) and
the floor it asserts; a sweep file's floor holds for every task. Files that need data or weights
from the internet are listed in EXCLUDED with the reason. Runs are shared with test_lessons.py.
"""
from __future__ import annotations

import re
import shlex

import pytest

from hpcnn.data.synthetic import write_image_folder
from tests.helpers import REPO
from tests.integration.lesson_runs import job_configs, trained

DOC = REPO / "docs" / "lessons.md"
ROW = re.compile(r"^\| `(jobs/[\w/.-]+\.yaml)` \| (as shipped|`[^`]*`) \|.*\| `(val|test)\.accuracy >= ([0-9.]+)` \|$")
EXCLUDED = {
    "jobs/cifar10_resnet18.yaml": "reads CIFAR-10 from /project/data/torchvision: `hpcnn data fetch` needs internet",
    "jobs/transfer_features.yaml": "ImageNet ResNet-50 weights (`hpcnn weights fetch`, internet) on your own 224² images",
    "jobs/transfer_finetune.yaml": "ImageNet ResNet-18 weights (`hpcnn weights fetch`, internet) on your own 224² images",
}


def documented() -> dict[str, tuple[list[str], str, float]]:
    """{job file: (overrides, metric, floor)} from the table in docs/lessons.md."""
    rows = {}
    for line in DOC.read_text().splitlines():
        m = ROW.match(line.strip())
        if m:
            path, setting, split, floor = m.groups()
            overrides = [] if setting == "as shipped" else shlex.split(setting.strip("`"))
            rows[path] = (overrides, f"{split}.accuracy", float(floor))
    return rows


ROWS = documented()


def test_every_job_file_has_a_documented_accuracy_or_a_reason():
    shipped = {str(p.relative_to(REPO)) for p in [*REPO.glob("jobs/*.yaml"), *REPO.glob("jobs/lessons/*.yaml")]}
    assert len(ROWS) >= 15, "the table in docs/lessons.md was not found"
    assert shipped == set(ROWS) | set(EXCLUDED), (sorted(shipped - set(ROWS) - set(EXCLUDED)),
                                                  sorted(set(ROWS) - shipped))
    assert not set(ROWS) & set(EXCLUDED)


@pytest.fixture(scope="session")
def galaxy_files(tmp_path_factory):
    """jobs/galaxies_folder.yaml's folder, generated small (what `hpcnn data generate` writes)."""
    root = tmp_path_factory.mktemp("galaxies") / "galaxies"
    write_image_folder(root, n=2000, size=32, seed=0, split_fractions={"train": 0.7, "val": 0.15, "test": 0.15})
    return root


def resolve(overrides: list[str], galaxy_files) -> list[str]:
    """Placeholders in the table: {galaxies} (generated files), {run:jobs/X.yaml} (that job's run directory)."""
    out = []
    for item in overrides:
        item = item.replace("{galaxies}", str(galaxy_files))
        m = re.search(r"\{run:(jobs/[\w/.-]+\.yaml)\}", item)
        if m:
            dep_overrides, _, _ = ROWS[m.group(1)]
            (_, cfg), = job_configs(REPO / m.group(1), resolve(dep_overrides, galaxy_files))
            item = item.replace(m.group(0), str(trained(cfg)[0]))
        out.append(item)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(ROWS))
def test_job_reaches_its_documented_accuracy(path, galaxy_files):
    overrides, metric, floor = ROWS[path]
    split, _, name = metric.partition(".")
    for label, cfg in job_configs(REPO / path, resolve(overrides, galaxy_files)):
        _, summary = trained(cfg)
        value = summary["metrics"][split][name]
        print(f"{path} [{label}]: {metric} {value:.4f} (floor {floor})")
        assert value >= floor, f"{path} [{label}]: {metric} {value:.4f} < {floor}"
