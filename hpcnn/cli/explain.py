"""`hpcnn explain RUN_DIR`: Grad-CAM heatmaps of a run's best checkpoint, as PNG grids in RUN_DIR/explain/.

torch is imported only when the command runs.
"""
from __future__ import annotations

from ..rundir import CONFIG_FILE


def cmd_explain(args) -> int:
    from ..explain.report import explain_run

    report = explain_run(args.run_dir, split=args.split, n=args.n, layer=args.layer, checkpoint=args.checkpoint,
                         device=args.device)
    print(f"Grad-CAM on layer {report['layer']} ({report['split']} split, {report['images']} images, "
          f"accuracy {report['accuracy']:.4f}, weights {report['checkpoint']})")
    print(f"{len(report['per_class'])} tiles, a few per class: {report['per_class_png']}")
    print(f"{len(report['mistakes'])} most confident mistakes: {report['mistakes_png']}")
    return 0


def register(subparsers) -> None:
    e = subparsers.add_parser("explain", help="Grad-CAM heatmaps of a trained run (what the network looks at)",
                              description="Draw Grad-CAM heatmaps over a run's images: a grid per class and the "
                              "most confident mistakes, as PNGs in RUN_DIR/explain/ (with explain.json).")
    e.add_argument("run_dir", metavar="RUN_DIR", help=f"a run directory (with {CONFIG_FILE} and checkpoints/)")
    e.add_argument("--split", choices=["test", "val"], default="test", help="which split's images (default: test)")
    e.add_argument("--n", type=int, default=32, help="tiles per grid (default: 32)")
    e.add_argument("--layer", metavar="NAME",
                   help="module whose activations are used (default: the last convolutional block)")
    e.add_argument("--checkpoint", choices=["best", "final"], default="best",
                   help="best: checkpoints/best.pt (else model_final.pt); final: model_final.pt")
    e.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when visible, else cpu")
    e.set_defaults(func=cmd_explain)
