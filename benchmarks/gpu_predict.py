"""Predict throughput on a GPU: fp32 vs bf16 autocast + channels_last (and torch.compile), side by side.

    .venv/bin/python benchmarks/gpu_predict.py [--model resnet50] [--image-size 224] [--batch 256] [--out PATH]

Prints one JSON object (and writes it to --out). Without CUDA it prints {"skipped": "no GPU"} and
exits 0. The network is built from hpcnn's model registry with random weights (a generated run:
throughput does not depend on the weights) and wrapped in hpcnn's ``Predictor``, so each variant runs
exactly ``Predictor.probabilities`` — the step ``hpcnn predict`` runs per batch: uint8 images to the
GPU, normalise, (channels_last), (autocast), softmax. Decoding is excluded (it scales with CPU
workers, not with the GPU). Variants are timed in alternating rounds; medians and ratios to fp32.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def emit(report: dict, out: str | None) -> None:
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50", help="any hpcnn model name (simple_cnn, resnet_small, resnet50...)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="timed batches per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--device", default="cuda", help="cuda; cpu only to smoke-test this script (not a GPU number)")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        emit({"benchmark": "gpu_predict", "skipped": "no GPU"}, args.out)
        return 0

    from hpcnn.config.schema import ModelConfig
    from hpcnn.models.registry import build_model
    from hpcnn.predict.predictor import Predictor

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    pre = {"image_size": args.image_size, "channels": 3, "center_crop": None, "mean": [0.5] * 3, "std": [0.25] * 3}
    base, _ = build_model(ModelConfig(name=args.model), args.classes, 3, args.image_size)
    base = base.to(device).eval()
    variants = {"fp32": Predictor(base, [str(i) for i in range(args.classes)], pre, device, Path("generated"))}
    fast = build_model(ModelConfig(name=args.model), args.classes, 3, args.image_size)[0]
    fast.load_state_dict(base.state_dict())
    fast = fast.to(device).eval().to(memory_format=torch.channels_last)
    variants["bf16_channels_last"] = Predictor(fast, variants["fp32"].classes, pre, device, Path("generated"),
                                               "bf16", True)
    images = torch.randint(0, 256, (args.batch, 3, args.image_size, args.image_size), dtype=torch.uint8)
    images = images.pin_memory() if cuda else images

    def run(predictor, steps: int) -> float:
        normalize = predictor.normalize()
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            predictor.probabilities(images, normalize).cpu()  # .cpu(): like predict, which writes rows
        sync()
        return steps * args.batch / (time.perf_counter() - t0)

    def rounds(names: list[str], samples: dict) -> None:
        for _ in range(args.rounds):
            for name in names:
                samples.setdefault(name, []).append(run(variants[name], args.steps))

    with torch.no_grad():
        ref = variants["fp32"].probabilities(images).argmax(1)
        agree = float((variants["bf16_channels_last"].probabilities(images).argmax(1) == ref).float().mean())
    report = {"benchmark": "gpu_predict", "date": time.strftime("%Y-%m-%d"),
              "device": torch.cuda.get_device_name(device) if cuda else "cpu (smoke test)", "torch": torch.__version__,
              "model": args.model, "image_size": args.image_size, "batch": args.batch, "steps": args.steps,
              "rounds": args.rounds, "bf16_argmax_agreement_random_weights": agree,
              "command": "python benchmarks/gpu_predict.py " + " ".join(sys.argv[1:])}

    def summarize(samples: dict) -> dict:
        medians = {k: statistics.median(v) for k, v in samples.items()}
        return {"images_per_second": {k: round(v, 1) for k, v in medians.items()},
                "speedup_vs_fp32": {k: round(v / medians["fp32"], 2) for k, v in medians.items()},
                "samples": {k: [round(x, 1) for x in v] for k, v in samples.items()}}

    for predictor in variants.values():  # warm-up
        run(predictor, 3)
    samples: dict = {}
    rounds(["fp32", "bf16_channels_last"], samples)
    report.update(summarize(samples))
    emit(report, args.out)  # written before compiling: a compile that overruns the step's limit loses nothing
    if args.no_compile:
        return 0
    variants["bf16_channels_last_compiled"] = Predictor(torch.compile(fast), variants["fp32"].classes, pre, device,
                                                        Path("generated"), "bf16", True, True)
    t0 = time.perf_counter()
    run(variants["bf16_channels_last_compiled"], 3)
    report["compile_warmup_seconds"] = round(time.perf_counter() - t0, 1)
    compiled: dict = {}
    rounds(["fp32", "bf16_channels_last_compiled"], compiled)  # alternated with fp32 again
    summary = summarize(compiled)
    for key in ("images_per_second", "speedup_vs_fp32", "samples"):
        report[key]["bf16_channels_last_compiled"] = summary[key]["bf16_channels_last_compiled"]
    report["fp32_during_compiled_rounds"] = summary["images_per_second"]["fp32"]
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
