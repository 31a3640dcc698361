"""Offline weights end to end: fetch from a file:// mirror, verify, cache as torchvision expects; pre-flight; start
from an hpcnn run directory.

No test touches the internet. The mirror serves a real squeezenet1_1 state_dict (random init) under a name built
the way torchvision names its files, ``<stem>-<first 8 hex digits of its own SHA-256>.pth``: the fetch code verifies
that prefix exactly as it verifies torchvision's real names. The real name (squeezenet1_1-b8a52dc0.pth) is served
with other bytes to show that the production name -> file path rejects what does not match.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import http.server
import shutil
import threading

import pytest
import torch
import torchvision
from torchvision.models._api import Weights, WeightsEnum

from hpcnn.config import load_job
from hpcnn.config.weights_names import checkpoints_dir, parse_weights_name
from hpcnn.errors import ConfigError
from hpcnn.models.registry import build_model
from hpcnn.models.weights import WeightsError, fetch
from hpcnn.train.events import Callback
from hpcnn.cli.weights import register
from tests.helpers import TINY, run_hpcnn

REAL_NAME = "squeezenet1_1-b8a52dc0.pth"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """(directory, file name, state_dict): one squeezenet1_1 weights file named after its own SHA-256."""
    root = tmp_path_factory.mktemp("mirror")
    torch.manual_seed(0)
    state = torchvision.models.squeezenet1_1().state_dict()
    tmp = root / "upload.pth"
    torch.save(state, tmp)
    name = f"squeezenet1_1-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth"
    tmp.rename(root / name)
    return root, name, state


def ref_for(name):
    """squeezenet1_1.IMAGENET1K_V1 as the table gives it, stored in ``name`` instead of torchvision's file."""
    return dataclasses.replace(parse_weights_name("squeezenet1_1.IMAGENET1K_V1"), file_name=name)


def files_in(directory):
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


def test_fetch_verifies_and_torchvision_loads_from_the_cache(mirror, tmp_path, monkeypatch):
    root, name, state = mirror
    cache = tmp_path / "cache"
    path, downloaded = fetch(ref_for(name), cache, root.as_uri())
    assert downloaded and path == cache / "hub" / "checkpoints" / name
    assert path.read_bytes() == (root / name).read_bytes() and files_in(cache) == [name]  # no temp file left
    assert fetch(ref_for(name), cache, "file:///nonexistent/mirror") == (path, False)  # cached: no download

    # torchvision's own loader finds it under TORCH_HOME=cache. The URL is the official one, which this
    # machine cannot reach: the file can only come from the cache.
    monkeypatch.setenv("TORCH_HOME", str(cache))

    class Fetched(WeightsEnum):
        V1 = Weights(url=ref_for(name).url, transforms=None, meta={})

    loaded = Fetched.V1.get_state_dict(progress=False, check_hash=True, weights_only=True)
    model = torchvision.models.squeezenet1_1()
    model.load_state_dict(loaded)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    # and torch.hub's own hash check accepts the file our check accepted
    torch.hub.download_url_to_file((root / name).as_uri(), str(tmp_path / "hub-copy"), ref_for(name).hash_prefix,
                                   progress=False)


def test_mirror_from_the_environment(mirror, tmp_path, monkeypatch):
    root, name, _ = mirror
    monkeypatch.setenv("HPCNN_WEIGHTS_MIRROR", str(root))  # a plain directory works as a mirror
    assert fetch(ref_for(name), tmp_path)[1]
    assert files_in(tmp_path) == [name]


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_a_bad_download_is_rejected_and_leaves_no_file(mirror, tmp_path, damage):
    root, name, _ = mirror
    data = bytearray((root / name).read_bytes())
    if damage == "truncated":
        data = data[:len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad-mirror"
    bad.mkdir()
    (bad / name).write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=f"{name} is corrupt: its SHA-256 starts"):
        fetch(ref_for(name), tmp_path / "cache", bad.as_uri())
    assert files_in(tmp_path / "cache") == []


def test_a_connection_that_drops_early_is_rejected(mirror, tmp_path, monkeypatch):
    """A server that announces N bytes and closes after N/2: urllib reads that silently, the fetch does not."""
    root, name, _ = mirror
    body = (root / name).read_bytes()

    class HalfBody(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:len(body) // 2])
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HalfBody)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    try:
        with pytest.raises(WeightsError, match=f"truncated download of {name}: got {len(body) // 2} of {len(body)}"):
            fetch(ref_for(name), tmp_path / "cache", f"http://127.0.0.1:{server.server_port}/models", timeout=20)
    finally:
        server.shutdown()
        server.server_close()
    assert files_in(tmp_path / "cache") == []


def weights_cli(*argv):
    """`hpcnn weights ...` parsed by the verb's own parser (the main CLI adds the same one)."""
    parser = argparse.ArgumentParser(prog="hpcnn")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["weights", *argv])
    return args.func(args)


def test_cli_rejects_other_bytes_under_torchvisions_real_name(mirror, tmp_path, capsys):
    root, name, _ = mirror
    fake = tmp_path / "mirror"
    fake.mkdir()
    shutil.copy(root / name, fake / REAL_NAME)  # a squeezenet1_1 state_dict, but not torchvision's bytes
    with pytest.raises(WeightsError, match=f"{REAL_NAME} is corrupt: its SHA-256 starts .*, its name says b8a52dc0"):
        weights_cli("fetch", "squeezenet1_1.IMAGENET1K_V1", "--cache", str(tmp_path / "cache"), "--mirror",
                    fake.as_uri())
    assert files_in(tmp_path / "cache") == []
    with pytest.raises(ConfigError, match="unknown weights name 'squeezenet9'"):
        weights_cli("fetch", "squeezenet9", "--cache", str(tmp_path / "cache"))


def test_cli_fetch_then_list(mirror, tmp_path, capsys):
    root, name, _ = mirror
    cache = tmp_path / "cache"
    assert weights_cli("list", "--cache", str(cache)) == 0
    assert f"no weights cached in {checkpoints_dir(cache)}" in capsys.readouterr().out
    fetch(ref_for(name), cache, root.as_uri())
    shutil.copy(root / name, checkpoints_dir(cache) / REAL_NAME)  # as if fetched: the listing goes by name
    assert weights_cli("list", "--cache", str(cache)) == 0
    out = capsys.readouterr().out
    assert f"{REAL_NAME}  squeezenet1_1.IMAGENET1K_V1 (DEFAULT)" in out
    assert f"{name}  (not a known torchvision weights file)" in out
    assert out.count(" MB  ") == 2, out  # squeezenet1_1: about 5 MB


def test_hpcnn_weights_is_a_cli_verb(tmp_path):
    proc = run_hpcnn("weights", "fetch", "resnet18", "--cache", str(tmp_path), "--mirror", str(tmp_path / "none"),
                     timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot download resnet18-f37072fd.pth" in proc.stderr


def test_preflight_names_the_fetch_command(mirror, tmp_path):
    root, _, _ = mirror
    cache = tmp_path / "cache"
    args = ["submit", "--dry-run", "--profile", "local", "model.name=squeezenet1_1", "model.weights=DEFAULT",
            f"model.weights_cache={cache}", f"train.runs_dir={tmp_path / 'runs'}"]
    proc = run_hpcnn(*args, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"hpcnn weights fetch squeezenet1_1.IMAGENET1K_V1 --cache {cache}" in proc.stderr
    assert not list((tmp_path / "runs").glob("*")), "nothing was planned for a job that would fail"
    checkpoints_dir(cache).mkdir(parents=True)
    shutil.copy(next(root.glob("*.pth")), checkpoints_dir(cache) / REAL_NAME)  # stands in for the fetched file
    proc = run_hpcnn(*args, timeout=120)
    assert proc.returncode == 0 and "pre-flight passed" in proc.stderr, proc.stderr


class InitialState(Callback):
    def on_run_start(self, trainer):
        self.state = {k: v.clone() for k, v in trainer.raw_model.state_dict().items()}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny simple_cnn run on the 10 digit classes."""
    from hpcnn.run import run_job

    tmp = tmp_path_factory.mktemp("source")
    assert run_job(load_job(None, [*TINY, f"train.runs_dir={tmp}"]), tmp / "run").status == "completed"
    return tmp / "run"


def test_start_from_a_run_directory_with_another_number_of_classes(trained_run):
    best = torch.load(trained_run / "checkpoints" / "best.pt", weights_only=True)["model"]
    cfg = load_job(None, [*TINY, f"model.weights={trained_run}"]).model
    model, report = build_model(cfg, num_classes=4, in_channels=1, image_size=16)
    assert report["source"] == str(trained_run / "checkpoints" / "best.pt")
    assert report["skipped"] == {"1.6.weight": "(10, 256) -> (4, 256)", "1.6.bias": "(10,) -> (4,)"}
    assert not report["missing"] and not report["unused"]
    assert report["backbone"]["loaded"] == report["backbone"]["total"] == 10  # 2 x (conv; BN weight, bias, 2 stats)
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items() if k not in report["skipped"])


def test_a_job_starts_from_a_run_directory(trained_run, tmp_path):
    from hpcnn.run import run_job

    best = torch.load(trained_run / "checkpoints" / "best.pt", weights_only=True)["model"]
    seen = InitialState()
    cfg = load_job(None, [*TINY, "train.epochs=1", "train.max_steps_per_epoch=1", f"model.weights={trained_run}",
                          f"train.runs_dir={tmp_path}"])
    run_job(cfg, tmp_path / "run", callbacks=[seen])
    assert all(torch.equal(seen.state[k], v) for k, v in best.items())  # head too: same 10 classes


def test_another_architecture_is_refused_naming_the_file(trained_run):
    cfg = load_job(None, [*TINY, "model.name=resnet_small", f"model.weights={trained_run}"]).model
    with pytest.raises(ConfigError) as err:
        build_model(cfg, num_classes=10, in_channels=1, image_size=16)
    text = str(err.value)
    assert f"match {trained_run / 'checkpoints' / 'best.pt'}" in text and text.startswith("0 of ")
    assert "it was trained with model.name=simple_cnn" in text
