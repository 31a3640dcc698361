"""`hpcnn predict RUN_DIR INPUT... --out FILE`: a trained run applied to image files (any launcher)."""
from __future__ import annotations

import json


def cmd_predict(args) -> int:
    import torch

    from .dist import make_comm
    from .env import detect_world
    from .predict import list_inputs, load_predictor, predict_files
    from .train.logs import setup_logging

    world = detect_world()
    setup_logging(world.rank)
    comm = make_comm(world, "auto", torch.device("cpu"), 300.0)  # gloo for gathering rows; predicting on CPU
    try:
        predictor = load_predictor(args.run_dir, args.checkpoint)
        result = predict_files(predictor, list_inputs(args.inputs), args.out, args.topk, args.batch_size,
                               args.num_workers, comm)
    finally:
        comm.shutdown()
    if comm.is_main and args.json:
        print(json.dumps(result, indent=2))
    return 0


def cmd_export(args) -> int:
    from .predict.export import export_run

    model, meta = export_run(args.run_dir, args.out, args.checkpoint)
    print(f"wrote {model} and {meta}: load with torch.export.load({str(model)!r}).module() (no hpcnn needed)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="apply a trained run to image files (CSV: top-k classes per file)",
                              description="Predict with a run's best checkpoint and exactly its evaluation "
                                          "preprocessing. Under torchrun/srun each rank takes a shard.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, glob patterns, .txt lists")
    p.add_argument("--out", required=True, help="CSV file to write (one row per input, in input order)")
    p.add_argument("--checkpoint", choices=["best", "final"], default="best")
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader decoding processes")
    p.add_argument("--json", action="store_true", help="print the run's counts and throughput as JSON")
    p.set_defaults(func=cmd_predict)

    e = subparsers.add_parser("export", help="write a run's network with torch.export (+ JSON: classes, preprocessing)",
                              description="A model file a colleague can load with plain PyTorch, no hpcnn.")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--out", required=True, help="model file to write, e.g. model.pt2 (the JSON goes next to it)")
    e.add_argument("--checkpoint", choices=["best", "final"], default="best")
    e.set_defaults(func=cmd_export)
