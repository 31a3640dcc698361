"""`hpcnn predict`: the trainer's own test predictions, error rows for bad files, 2 ranks = 1 rank."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.helpers import PYTHON, REPO, run_hpcnn

TRAIN = ["data.source=folder", "data.image_size=32", "train.epochs=2", "train.plots=false", "train.tensorboard=false",
         "model.channels=[8,16,32]", "train.threads=1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    assert run_hpcnn("data", "generate", "--out", root / "data", "--n", "480", "--size", "40").returncode == 0
    proc = run_hpcnn("train", *TRAIN, f"data.root={root / 'data'}", f"--run-dir={root / 'run'}")
    assert proc.returncode == 0, proc.stderr
    return root


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predictions_equal_the_trainers_test_predictions(run, tmp_path):
    out = tmp_path / "pred.csv"
    proc = run_hpcnn("predict", run / "run", run / "data" / "test", "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    got = {r["path"]: r for r in rows(out)}
    report = proc.stdout[re.search(r"^\{", proc.stdout, re.M).start():]  # after the log lines
    labelled = json.loads(report)["labelled"]  # test/<class>/*.png: a labelled folder

    # the trainer's evaluation path, from the same checkpoint and the run's own config
    from hpcnn.models.registry import build_model
    from hpcnn.rundir import config_for_resume
    from hpcnn.train.checkpoint import load_file
    from hpcnn.train.inputs import job_inputs
    from hpcnn.data.loaders import ShardBatchSampler, make_loader
    from hpcnn.train.loop import predict

    cfg = config_for_resume(run / "run")
    splits, normalize = job_inputs(cfg, announce=False)
    model, _ = build_model(cfg.model, len(splits.classes), cfg.data.channels, cfg.data.image_size)
    model.load_state_dict(load_file(run / "run" / "checkpoints" / "best.pt")["model"])
    ctx = SimpleNamespace(device=torch.device("cpu"), non_blocking=False, normalize=normalize, channels_last=False,
                          amp_dtype=None)
    test = splits.test
    logits, labels = predict(model, make_loader(test, ShardBatchSampler(len(test), 64, 0, 1), 0, False), ctx)
    probs = torch.softmax(logits, 1)
    assert len(got) == len(test.paths)
    for path, p in zip(test.paths, probs):
        row = got[path]
        assert row["class1"] == splits.classes[int(p.argmax())] and row["error"] == ""
        assert abs(float(row["prob1"]) - float(p.max())) < 1e-6
    summary = json.loads((run / "run" / "summary.json").read_text())
    correct = sum(r["class1"] == Path(r["path"]).parent.name for r in got.values())
    assert correct / len(got) == pytest.approx(summary["metrics"]["test"]["accuracy"], abs=1e-12)
    assert labelled["accuracy"] == pytest.approx(summary["metrics"]["test"]["accuracy"], abs=1e-12)
    assert labelled["labelled"] == len(got) and sum(c["n"] for c in labelled["per_class"].values()) == len(got)
    assert re.search(r"accuracy \d\.\d{4} \(\d+/%d in class folders; " % len(got), proc.stdout), proc.stdout


def test_bad_files_are_rows_with_errors_and_the_rest_is_predicted(run, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted((run / "data" / "test").rglob("*.png"))[:5]
    for i, src in enumerate(good):
        (folder / f"ok{i}.png").write_bytes(src.read_bytes())
    (folder / "corrupt.png").write_bytes(good[0].read_bytes()[:60])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "readme.txt.md").write_text("not an image")
    out = tmp_path / "pred.csv"
    proc = run_hpcnn("predict", run / "run", folder, "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    result = {Path(r["path"]).name: r for r in rows(out)}
    assert {n for n, r in result.items() if r["error"]} == {"corrupt.png", "empty.jpg", "readme.txt.md"}
    assert all(result[f"ok{i}.png"]["class1"] for i in range(5))
    assert json.loads(proc.stdout[proc.stdout.index("{"):])["errors"] == 3


def test_a_named_pipe_is_an_error_row_not_a_hang(run, tmp_path):
    """A FIFO named like an image (in a folder, through a link, named directly, in a list) blocks open()
    until someone writes to it; a socket cannot be opened. Each is an error row; the rest is predicted."""
    import socket

    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted((run / "data" / "test").rglob("*.png"))[:2]
    for i, src in enumerate(good):
        (folder / f"ok{i}.png").write_bytes(src.read_bytes())
    os.mkfifo(folder / "pipe.png")
    (folder / "link.png").symlink_to(folder / "pipe.png")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "sock.png"))
        listed = tmp_path / "list.txt"
        listed.write_text(f"{folder / 'pipe.png'}\n{folder / 'ok0.png'}\n")
        out = tmp_path / "pred.csv"
        # a regression hangs on the open: the timeout turns it into a failure
        proc = run_hpcnn("predict", run / "run", folder, folder / "pipe.png", listed, "--out", out, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = [(Path(r["path"]).name, r["error"]) for r in rows(out)]
    assert [name for name, _ in got] == ["link.png", "ok0.png", "ok1.png", "pipe.png", "sock.png", "pipe.png",
                                         "pipe.png", "ok0.png"]
    errors = dict(got)
    assert errors["ok0.png"] == errors["ok1.png"] == ""
    assert errors["pipe.png"].startswith("NotARegularFile: a named pipe (FIFO), not a regular file")
    assert errors["link.png"].startswith("NotARegularFile: a named pipe (FIFO)")
    assert errors["sock.png"].startswith("NotARegularFile: a socket")


def test_an_output_place_that_cannot_be_written_is_one_line_before_any_input_is_read(run, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    bad_out = blocker / "sub" / "pred.csv"
    proc = run_hpcnn("predict", run / "run", run / "data" / "test", "--out", bad_out)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"cannot write --out {bad_out}: Not a directory" in lines[0]
    proc = run_hpcnn("predict", run / "run", tmp_path / "no-such-input", "--out", bad_out)  # not read yet
    assert proc.returncode == 2 and "cannot write --out" in proc.stderr and "input not found" not in proc.stderr
    proc = run_hpcnn("predict", run / "run", run / "data" / "test", "--out", tmp_path)
    assert proc.returncode == 2 and f"--out {tmp_path} is a directory" in proc.stderr


def test_predictions_onto_a_full_disk_are_one_line_and_the_old_file_is_intact(run, tmp_path):
    from tests.support.small_fs import PAGE, small_filesystem

    with small_filesystem(tmp_path / "fs", 2 * PAGE) as fs:
        out = fs / "pred.csv"
        out.write_text("the previous predictions\n")  # one page taken; the new file gets one before it is full
        proc = run_hpcnn("predict", run / "run", run / "data" / "test", "--out", out)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert re.search(r"the file system is full: pred\.csv needs more than the [\d,]+ bytes written, [\d,]+ "
                         r"bytes free there \(.*pred\.csv\) — hint: the previous version of the file is intact",
                         lines[0]), lines[0]
        assert out.read_text() == "the previous predictions\n" and os.listdir(fs) == ["pred.csv"]


@pytest.mark.dist
def test_two_ranks_write_the_same_file_as_one(run, tmp_path):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    assert run_hpcnn("predict", run / "run", run / "data" / "test", "--out", one).returncode == 0
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "hpcnn", "predict",
           str(run / "run"), str(run / "data" / "test"), "--out", str(two)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert two.read_text() == one.read_text()


def test_missing_input_is_one_clear_error(run, tmp_path):
    proc = run_hpcnn("predict", run / "run", tmp_path / "nope", "--out", tmp_path / "x.csv")
    assert proc.returncode == 2 and "input not found" in proc.stderr.strip().splitlines()[-1]
    proc = run_hpcnn("predict", tmp_path, tmp_path, "--out", tmp_path / "x.csv")
    assert proc.returncode == 2 and "not a run directory" in proc.stderr


PLAIN_TORCH = """
import json, sys
import numpy as np, torch
from PIL import Image
model_file, meta_file, *paths = sys.argv[1:]
meta = json.load(open(meta_file))
size, inp = meta["input"]["shape"][-1], meta["input"]
x = []
for p in paths:
    im = Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)
    x.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0)
x = (torch.stack(x) - torch.tensor(inp["mean"]).view(1, -1, 1, 1)) / torch.tensor(inp["std"]).view(1, -1, 1, 1)
probs = torch.softmax(torch.export.load(model_file).module()(x), 1)
assert "hpcnn" not in sys.modules
print(json.dumps([[meta["classes"][int(p.argmax())], float(p.max())] for p in probs]))
"""


def test_exported_model_runs_without_hpcnn_and_agrees(run, tmp_path):
    model = tmp_path / "model.pt2"
    proc = run_hpcnn("export", run / "run", "--out", model)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(model.with_suffix(".json").read_text())
    assert meta["classes"] and meta["input"]["center_crop"] is None
    images = sorted((run / "data" / "test").rglob("*.png"))[:12]
    out = tmp_path / "pred.csv"
    assert run_hpcnn("predict", run / "run", *images, "--out", out).returncode == 0
    plain = subprocess.run([PYTHON, "-c", PLAIN_TORCH, str(model), str(model.with_suffix(".json")), *map(str, images)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr[-2000:]
    for (cls, prob), row in zip(json.loads(plain.stdout), rows(out)):
        assert cls == row["class1"] and abs(prob - float(row["prob1"])) < 1e-5


def _in_process(run, entries, out, **kwargs):
    from hpcnn.predict import load_predictor, predict_files

    options = {k: kwargs.pop(k) for k in ("precision", "channels_last", "compile") if k in kwargs}
    return predict_files(load_predictor(run / "run", **options), entries, out, progress=False, **kwargs)


def test_parquet_output_matches_the_csv_and_batch_logs_are_timestamped_lines(run, tmp_path):
    from hpcnn.predict import list_inputs
    from hpcnn.predict.outputs import read_rows

    test = run / "data" / "test"
    _in_process(run, list(list_inputs([test])), tmp_path / "pred.csv")
    proc = run_hpcnn("predict", run / "run", test, "--out", tmp_path / "pred.parquet", "--batch-size", "16",
                     "--log-every", "0", "--num-workers", "2")  # not a terminal: a log line per batch, no \r
    assert proc.returncode == 0, proc.stderr
    progress = [line for line in proc.stdout.splitlines() if "img/s, eta" in line]
    n = len(rows(tmp_path / "pred.csv"))
    assert len(progress) == -(-n // 16) and "\r" not in proc.stdout
    assert all(re.match(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] predicted \d+/\d+ ", line) for line in progress)
    assert re.search(r"predicted \d+ inputs \(0 unreadable\) in [\d.]+ s: \d+ img/s", proc.stdout)
    table, expected = read_rows(tmp_path / "pred.parquet"), rows(tmp_path / "pred.csv")
    assert [r["path"] for r in table] == [r["path"] for r in expected]
    for got, want in zip(table, expected):
        assert got["class1"] == want["class1"] and got["prob1"] == float(want["prob1"]) and got["error"] == ""


def test_listed_inputs_are_held_on_disk_and_read_back_exactly(tmp_path):
    import gc
    import os

    from hpcnn.predict.listing import EntryList

    names = ["a.png", "dir/with\nnewline.png", "ü/ß.jpg", "bad-\udcff.png"]
    entries = EntryList.write(iter(names), str(tmp_path))
    assert list(entries) == names and entries[-1] == names[-1] and list(entries[1:3]) == names[1:3]
    assert entries.offsets.itemsize == 8 and len(entries[4:]) == 0
    with pytest.raises(IndexError):
        entries[4]
    path = entries.path
    del entries
    gc.collect()
    assert not os.path.exists(path)


def test_parquet_without_pyarrow_is_one_clear_error(monkeypatch, tmp_path):
    from hpcnn.errors import ConfigError
    from hpcnn.predict.outputs import check_output

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ConfigError, match=r"writing \.parquet needs pyarrow.*pip install 'hpcnn\[parquet\]'"):
        check_output(tmp_path / "x.parquet")


def test_hdf5_rows_are_predicted_like_files_with_the_same_pixels(run, tmp_path):
    import h5py
    import numpy as np
    from PIL import Image

    from hpcnn.predict import list_inputs, load_predictor

    pre = load_predictor(run / "run").preprocess
    size, mode = pre["image_size"], "RGB" if pre["channels"] == 3 else "L"
    folder = tmp_path / "png"
    folder.mkdir()
    pixels = []
    for i, src in enumerate(sorted((run / "data" / "test").rglob("*.png"))[:20]):
        im = Image.open(src).convert(mode).resize((size, size))  # at the model's size: no resize on either path
        im.save(folder / f"{i:03d}.png")
        pixels.append(np.asarray(im))
    h5 = tmp_path / "galaxy.h5"
    with h5py.File(h5, "w") as f:
        f["images"] = np.stack(pixels)
        f["ans"] = np.zeros(len(pixels), dtype=np.int64)
    listed = tmp_path / "more.txt"
    listed.write_text(f"{h5}[3]\n{h5}[99]\n")
    _in_process(run, list(list_inputs([folder])), tmp_path / "png.csv")
    _in_process(run, list(list_inputs([h5, listed])), tmp_path / "h5.csv", batch=8, workers=2)  # a handle per worker
    png, got = rows(tmp_path / "png.csv"), rows(tmp_path / "h5.csv")
    assert [r["path"] for r in got] == [f"{h5}[{i}]" for i in range(20)] + [f"{h5}[3]", f"{h5}[99]"]
    for want, row in zip(png, got):
        assert row["class1"] == want["class1"] and abs(float(row["prob1"]) - float(want["prob1"])) < 1e-6
    assert got[20]["class1"] == got[3]["class1"] and got[20]["error"] == ""
    assert got[21]["error"].startswith("IndexError: row 99 is past the end") and got[21]["class1"] == ""


def test_bf16_autocast_and_channels_last_give_the_same_classes_on_cpu(run, tmp_path):
    from hpcnn.predict import list_inputs

    entries = list(list_inputs([run / "data" / "test"]))
    _in_process(run, entries, tmp_path / "fp32.csv")
    result = _in_process(run, entries, tmp_path / "bf16.csv", precision="bf16", channels_last=True)
    assert result["precision"] == "bf16" and result["channels_last"]
    fp32, bf16 = rows(tmp_path / "fp32.csv"), rows(tmp_path / "bf16.csv")
    assert [r["class1"] for r in bf16] == [r["class1"] for r in fp32]
    assert max(abs(float(a["prob1"]) - float(b["prob1"])) for a, b in zip(fp32, bf16)) < 0.05


PEAK_RSS = """
import json, resource, runpy, sys
sys.argv = ["hpcnn", *sys.argv[1:]]
try:
    runpy.run_module("hpcnn", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    assert not exit.code, exit.code
# VmHWM, not ru_maxrss: Linux carries the forking parent's high-water mark (here pytest's) into
# ru_maxrss across fork + exec, while VmHWM belongs to this process's own address space
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print("PEAK_RSS_KIB", int(hwm.split()[1]))
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_number_of_files(run, tmp_path):
    png = sorted((run / "data" / "test").rglob("*.png"))[0].read_bytes()
    paths = []
    for i in range(20000):  # real files, one image's bytes each (decoding cost is not what is measured)
        path = tmp_path / "many" / f"{i // 1000:02d}" / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        paths.append(str(path))
    peaks = {}
    for n in (2000, 20000):
        listed = tmp_path / f"list-{n}.txt"
        listed.write_text("\n".join(paths[:n]) + "\n")
        proc = subprocess.run([PYTHON, "-c", PEAK_RSS, "predict", str(run / "run"), str(listed), "--out",
                               str(tmp_path / f"out-{n}.csv")], cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        peaks[n] = int(proc.stdout.split("PEAK_RSS_KIB")[1]) / 1024
        assert len(rows(tmp_path / f"out-{n}.csv")) == n
    # the paths themselves are held (~0.25 KiB each: 4.5 MiB for 18,000 more); images and rows never are
    assert peaks[20000] - peaks[2000] < 24, peaks
    assert peaks[20000] < 1024, peaks
