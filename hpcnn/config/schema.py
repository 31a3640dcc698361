"""The job config schema: one dataclass per YAML section.

Each field carries a one-line ``doc`` in its metadata; ``docs/config.md`` is generated
from it (``python -m hpcnn.config.reference``) and a test keeps the two in step.
Checks that need more than a type (ranges, choices) live in ``CHECKS`` below, so the
loader can report them with the dotted key and the file they came from.
This module is stdlib-only: the login node may not have torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Union

from .strict import doc


@dataclass
class AugmentConfig:
    hflip: bool = doc(False, "random horizontal flip (p=0.5)")
    vflip: bool = doc(False, "random vertical flip (p=0.5); fine for sky images, wrong for digits")
    rotation: float = doc(0.0, "random rotation range in degrees (±)")
    random_resized_crop: Optional[float] = doc(None, "min area scale of RandomResizedCrop, e.g. 0.7; null = off")
    color_jitter: float = doc(0.0, "brightness/contrast/saturation jitter strength; 0 = off")


@dataclass
class MarkerConfig:
    enabled: bool = doc(False, "the shortcut lesson: paint a square into the top-left corner whose colour names "
                               "the class (train and val); in-memory sources only")
    size: int = doc(8, "side of the marker square in pixels of the final image (data.image_size)")
    test: str = doc("random", "random | class | none: the test images' marker: a random class's colour (the "
                              "lesson), the true class's colour, or no marker")


@dataclass
class DataConfig:
    source: str = doc("synthetic", "synthetic | folder | digits | torchvision | hdf5 | shards (a pack written by "
                                   "`hpcnn data pack`)")
    root: Optional[str] = doc(None, "data directory (folder, torchvision root, hdf5 file, shard pack)")
    stage: str = doc("none", "none | auto | PATH: copy the shard pack or HDF5 file to node-local storage before "
                             "training, once per node (auto: the profile's local_scratch, else $SLURM_TMPDIR, "
                             "else $TMPDIR); a requeued job on the same node reuses the copy")
    name: Optional[str] = doc(None, "torchvision data set name (CIFAR10, MNIST, FashionMNIST, ...)")
    image_size: int = doc(64, "images are resized/generated to this square size")
    channels: int = doc(3, "input channels the model sees (1 = grayscale, 3 = RGB)")
    n_train: int = doc(6000, "synthetic: training images generated")
    n_val: int = doc(1000, "synthetic: validation images generated")
    n_test: int = doc(1000, "synthetic: test images generated")
    val_fraction: float = doc(0.15, "folder/digits/torchvision: fraction of training data held out for validation")
    test_fraction: float = doc(0.15, "folder/digits: fraction held out for test when no test split exists")
    split_seed: int = doc(1234, "seed of the train/val/test split (independent of the training seed)")
    normalize: bool = doc(True, "standardise inputs with per-channel mean/std of the training split")
    on_corrupt: str = doc("skip", "skip | fail: what a corrupt or unreadable image file does")
    verify: str = doc("header", "folder: header | full | none: how rank 0 checks each image file before training "
                                "(header: open it and check its structure; full: decode it; none: trust the "
                                "listing); verdicts are cached by size and mtime, so the next job re-checks only "
                                "changed files")
    shared_memory: bool = doc(True, "in-memory sources (synthetic, digits, torchvision, hdf5): hold the resized "
                                    "uint8 images once per node in /dev/shm, mapped by every rank of the node; "
                                    "false = one private copy per rank")
    num_workers: int = doc(0, "DataLoader worker processes (0 = load in the training process)")
    pin_memory: bool = doc(True, "pin host memory when training on a GPU")
    decode: str = doc("auto", "auto | cpu | gpu: where training JPEGs are decoded (gpu: nvJPEG on the training GPU, batched; auto: gpu when training on a GPU from a folder of JPEGs, else cpu)")
    center_crop: Optional[float] = doc(None, "resize the shorter side to image_size / center_crop, then keep the "
                                            "central image_size square (torchvision's eval geometry); null = resize "
                                            "the whole image to image_size, or with torchvision weights their own "
                                            "ratio (e.g. 224/256)")
    classes: Optional[list] = doc(None, "use only these classes (names), in this order; null = all")
    max_per_class: int = doc(0, "at most this many training images per class (few-shot tasks); 0 = all")
    augment: AugmentConfig = doc(None, "training-time augmentation")
    marker: MarkerConfig = doc(None, "a spurious class marker (the shortcut lesson, docs/lessons.md)")


@dataclass
class ModelConfig:
    name: str = doc("simple_cnn", "mlp | simple_cnn | resnet_small | any torchvision classification model name")
    channels: list = doc([16, 32, 64, 64], "simple_cnn: output channels of each conv-BN-ReLU-pool block")
    hidden: list = doc([256], "mlp / simple_cnn head: widths of the hidden dense layers")
    dropout: float = doc(0.3, "dropout before the classifier (and between MLP layers)")
    batch_norm: bool = doc(True, "simple_cnn/mlp: use batch normalisation")
    init: str = doc("default", "default | kaiming | xavier | orthogonal: weight initialisation")
    width: int = doc(32, "resnet_small: channels of the first stage")
    depth: list = doc([2, 2, 2], "resnet_small: residual blocks per stage")
    weights: Optional[str] = doc(None, "initial weights: a torchvision weights name (DEFAULT, IMAGENET1K_V2; fetched "
                                       "beforehand with `hpcnn weights fetch`), a .pth/.pt state_dict file, an "
                                       "hpcnn run directory, or null for random init")
    weights_cache: Optional[str] = doc(None, "where fetched torchvision weights live (TORCH_HOME layout); null = "
                                             "$TORCH_HOME, else ~/.cache/torch")
    preprocess_from_weights: bool = doc(True, "with torchvision weights: normalise with the weights' mean/std "
                                              "(their metadata) instead of the training split's statistics")


@dataclass
class OptimConfig:
    name: str = doc("adamw", "sgd | adam | adamw | rmsprop")
    lr: float = doc(0.003, "base learning rate (before linear scaling, if enabled)")
    weight_decay: float = doc(0.05, "weight decay (decoupled for adamw)")
    momentum: float = doc(0.9, "sgd / rmsprop momentum")
    nesterov: bool = doc(False, "sgd: Nesterov momentum")
    betas: list = doc([0.9, 0.999], "adam / adamw betas")
    clip_grad_norm: Optional[float] = doc(None, "clip the global gradient norm to this value; null = off")
    l1: float = doc(0.0, "explicit L1 penalty l1 * sum|w| added to the loss (weights, not biases/norms); 0 = off")
    l2: float = doc(0.0, "explicit L2 penalty l2 * sum w^2 added to the loss (= weight_decay 2*l2 for sgd/adam/"
                         "rmsprop; not adamw's decoupled decay); 0 = off")


@dataclass
class ScheduleConfig:
    name: str = doc("cosine", "constant | step | cosine | onecycle")
    warmup_epochs: float = doc(1.0, "linear warmup from lr*warmup_start_factor, in epochs (fractions allowed)")
    warmup_start_factor: float = doc(0.1, "warmup starts at this fraction of the peak lr")
    min_lr_factor: float = doc(0.01, "cosine: final lr as a fraction of the peak lr")
    step_epochs: int = doc(10, "step: decay every this many epochs")
    gamma: float = doc(0.1, "step: multiply the lr by this at each decay")
    scale_lr: str = doc("none", "none | linear: multiply lr by global_batch / reference_batch (Goyal et al. 2017)")
    reference_batch: int = doc(256, "the global batch the base lr was tuned for")


@dataclass
class EarlyStopConfig:
    metric: str = doc("val.accuracy", "metric to monitor (val.loss, val.accuracy, val.f1_macro, ...)")
    mode: str = doc("max", "max | min: whether bigger is better")
    patience: int = doc(0, "stop after this many epochs without improvement; 0 = off")
    min_delta: float = doc(0.0, "smallest change that counts as an improvement")


@dataclass
class CheckpointConfig:
    every_epochs: int = doc(1, "write a checkpoint every this many epochs")
    every_minutes: float = doc(0.0, "also checkpoint mid-epoch after this many minutes (bounds work lost if a site never signals); 0 = off")
    keep_last: int = doc(2, "keep this many recent checkpoints (plus the best)")
    keep_best: bool = doc(True, "also keep the checkpoint with the best monitored metric")


@dataclass
class TrainConfig:
    epochs: int = doc(12, "number of passes over the training data")
    batch_size: int = doc(128, "images per optimizer step, per GPU/rank or global (see batch_scope)")
    batch_scope: str = doc("global", "global | per_rank: what batch_size counts")
    accumulate: int = doc(1, "gradient accumulation: micro-batches per optimizer step")
    label_smoothing: float = doc(0.0, "cross-entropy label smoothing")
    amp: str = doc("none", "none | bf16 | fp16: mixed precision (GPU only; ignored on CPU)")
    channels_last: bool = doc(False, "channels_last memory format (GPU)")
    compile: bool = doc(False, "torch.compile the model")
    device: str = doc("auto", "auto | cpu | cuda")
    threads: int = doc(0, "torch CPU threads per process; 0 = let torch decide")
    deterministic: bool = doc(True, "deterministic algorithms where torch offers them (bitwise resume on CPU)")
    topk: int = doc(3, "also report top-k accuracy for this k")
    log_every: int = doc(20, "log training progress every this many steps")
    eval_test: bool = doc(True, "evaluate the test split with the best checkpoint at the end")
    max_steps_per_epoch: int = doc(0, "cap on optimizer steps per epoch (smoke tests, benchmarks); 0 = no cap")
    runs_dir: str = doc("runs", "where run directories are created")
    tensorboard: bool = doc(True, "write TensorBoard event files (scalars; graph, histograms and embeddings in "
                                  "the tensorboard section)")
    plots: bool = doc(True, "write learning-curve and confusion-matrix PNGs")
    early_stopping: EarlyStopConfig = doc(None, "stop when a metric stops improving")
    cache_features: str = doc("auto", "auto | always | never: when only the head trains and nothing augments, compute "
                                      "the frozen backbone's features once and train the head on them")
    checkpoint: CheckpointConfig = doc(None, "checkpoint cadence and retention")


@dataclass
class DistConfig:
    backend: str = doc("auto", "auto | nccl | gloo | horovod (auto: nccl on GPUs, gloo on CPU)")
    timeout_s: float = doc(300.0, "collective timeout: a dead rank ends the job within about this long")
    sync_batchnorm: bool = doc(False, "convert BatchNorm to SyncBatchNorm (DDP)")
    find_unused_parameters: bool = doc(False, "DDP find_unused_parameters (needed for partially frozen models)")


@dataclass
class SlurmConfig:
    profile: Optional[str] = doc(None, "site profile name (slurm_templates/profiles/NAME.yaml) or path; null = your "
                                       "default ($HPCNN_PROFILE, else `profile:` in ~/.config/hpcnn/config.yaml)")
    nodes: int = doc(1, "nodes to allocate")
    gpus_per_node: int = doc(0, "GPUs per node (0 = CPU job)")
    tasks_per_node: Optional[int] = doc(None, "tasks per node; default one per GPU, or 1")
    cpus_per_task: Optional[int] = doc(None, "CPU cores per task; default from the profile")
    mem_gb: Optional[float] = doc(None, "memory per node in GB; default from the profile")
    time: str = doc("00:30:00", "walltime [D-]HH:MM:SS")
    partition: Optional[str] = doc(None, "partition; default from the profile")
    account: Optional[str] = doc(None, "account to charge; default from the profile")
    qos: Optional[str] = doc(None, "quality of service; default from the profile")
    constraint: Optional[str] = doc(None, "node feature constraint; default from the profile")
    job_name: Optional[str] = doc(None, "Slurm job name; default hpcnn-<config name>")
    max_requeues: int = doc(3, "how many times a preempted or timed-out job may requeue itself")
    extra_sbatch: dict = doc({}, "more #SBATCH options as {option: value} (checked against the profile)")


@dataclass
class MonitorConfig:
    enabled: bool = doc(True, "sample GPU telemetry (NVML) during the job, tagged with the trainer's position; "
                        "one log line and off without a driver (docs/monitoring.md)")
    interval_s: float = doc(5.0, "seconds between samples (also how often progress.json for `hpcnn top` refreshes)")


@dataclass
class TensorBoardConfig:
    """What TensorBoard shows beyond the scalars (all only when train.tensorboard is true; rank 0 writes)."""
    graph: bool = doc(True, "the model graph, traced once on one validation batch at the start (0.07 s CPU for "
                            "the default CNN); a model that does not trace costs one warning line, never the run")
    histograms_every: int = doc(0, "weight and gradient histograms every this many epochs; 0 = off (a write costs "
                                   "~0.6 s CPU for a ResNet-18, 1.5 s for a ResNet-50)")
    embeddings: bool = doc(False, "the embedding projector: penultimate-layer features of the test split (val "
                                  "without one) with labels, predictions and image thumbnails")
    embeddings_epoch: Optional[int] = doc(None, "write the embeddings after this (1-based) epoch with its weights; "
                                                "null = at the end of the run, with the best weights")
    embeddings_max: int = doc(1000, "at most this many images (the first of the split) in the projector")


@dataclass
class SSLConfig:
    method: str = doc("none", "none | simclr: self-supervised pretraining of the backbone (labels are not read)")
    temperature: float = doc(0.2, "simclr: NT-Xent softmax temperature")
    projection_dim: int = doc(128, "simclr: output size of the projection head")
    projection_hidden: int = doc(512, "simclr: hidden width of the projection head")
    crop_min_scale: float = doc(0.5, "simclr: random resized crop keeps an area fraction in [this, 1]")
    max_aspect: float = doc(1.0, "simclr: crop aspect ratio in [1/x, x]; 1 keeps shapes (SimCLR on ImageNet: 4/3)")
    color_jitter: float = doc(0.4, "simclr: brightness/contrast/saturation jitter strength")
    grayscale: float = doc(0.2, "simclr: probability of a grey view")
    blur: float = doc(0.5, "simclr: probability of a Gaussian blur")
    optimizer: str = doc("optim", "optim (the job's optim section) | lars (SGD with momentum and LARS trust ratios; "
                                  "lr, momentum, weight_decay from optim)")
    linear_probe: bool = doc(True, "simclr: at the end, fit a logistic-regression probe on frozen features (train "
                                   "split) and report val/test in summary.json; only the probe reads labels")


@dataclass
class PhaseConfig:
    """One stage of training with its own optimizer, schedule and trainable parameters (transfer learning)."""
    name: str = doc("", "shown in logs and summary.json; default phase1, phase2, ...")
    epochs: int = doc(1, "epochs in this phase")
    trainable: Union[str, list] = doc("all", "all | head (the classifier only) | top:N (the classifier and the last N "
                                             "backbone blocks) | a list of parameter-name patterns (fnmatch)")
    freeze_bn: bool = doc(True, "BatchNorm layers without trainable parameters stay in inference mode "
                                "(running statistics frozen, as Keras does for frozen layers)")
    optim: dict = doc({}, "overrides of the optim section for this phase, e.g. {name: sgd, lr: 0.0003}")
    schedule: dict = doc({}, "overrides of the schedule section for this phase, e.g. {warmup_epochs: 0}")
    lr_mult: dict = doc({}, "{parameter-name pattern: factor}: learning-rate multipliers (first matching pattern wins)")
    layer_decay: Optional[float] = doc(None, "layer-wise LR decay: the k-th block below the head gets lr * "
                                             "layer_decay**k; null = off")


@dataclass
class JobConfig:
    name: str = doc("default", "experiment name: used in run directory and job names")
    seed: int = doc(0, "training seed (weights init, shuffling, augmentation)")
    data: DataConfig = doc(None, "where images come from and how they are prepared")
    model: ModelConfig = doc(None, "the network")
    optim: OptimConfig = doc(None, "the optimizer")
    schedule: ScheduleConfig = doc(None, "the learning-rate schedule")
    train: TrainConfig = doc(None, "the training loop")
    dist: DistConfig = doc(None, "distributed training")
    slurm: SlurmConfig = doc(None, "resources asked from Slurm when submitted")
    monitor: MonitorConfig = doc(None, "GPU monitoring")
    tensorboard: TensorBoardConfig = doc(None, "TensorBoard extras: graph, histograms, embedding projector")
    ssl: SSLConfig = doc(None, "self-supervised pretraining")
    phases: List[PhaseConfig] = doc([], "training phases run in order (e.g. head only, then fine-tune); empty = "
                                        "one phase from optim, schedule and train.epochs. With phases, the run "
                                        "lasts the sum of their epochs and train.epochs is not used")


DATA_SOURCES = ("synthetic", "folder", "digits", "torchvision", "hdf5", "shards")

# dotted key -> (predicate, message). The loader applies these after types are checked.
CHECKS: dict[str, tuple] = {
    "data.source": (lambda v: v in DATA_SOURCES, f"must be one of {', '.join(DATA_SOURCES)}"),
    "data.image_size": (lambda v: 8 <= v <= 1024, "must be between 8 and 1024"),
    "data.channels": (lambda v: v in (1, 3), "must be 1 or 3"),
    "data.n_train": (lambda v: v > 0, "must be > 0"),
    "data.n_val": (lambda v: v > 0, "must be > 0"),
    "data.n_test": (lambda v: v >= 0, "must be >= 0"),
    "data.val_fraction": (lambda v: 0 < v < 1, "must be strictly between 0 and 1"),
    "data.test_fraction": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "data.on_corrupt": (lambda v: v in ("skip", "fail"), "must be skip or fail"),
    "data.verify": (lambda v: v in ("header", "full", "none"), "must be header, full or none"),
    "data.num_workers": (lambda v: v >= 0, "must be >= 0"),
    "data.decode": (lambda v: v in ("auto", "cpu", "gpu"), "must be auto, cpu or gpu"),
    "data.stage": (lambda v: bool(v.strip()), "must be none, auto or a directory path"),
    "data.augment.rotation": (lambda v: 0 <= v <= 180, "must be between 0 and 180 degrees"),
    "data.augment.random_resized_crop": (lambda v: v is None or 0 < v <= 1, "must be in (0, 1] or null"),
    "data.augment.color_jitter": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
    "data.marker.size": (lambda v: v >= 1, "must be >= 1 pixel"),
    "data.marker.test": (lambda v: v in ("random", "class", "none"), "must be random, class or none"),
    "model.dropout": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "model.init": (lambda v: v in ("default", "kaiming", "xavier", "orthogonal"), "must be default, kaiming, xavier or orthogonal"),
    "model.channels": (lambda v: len(v) > 0 and all(isinstance(c, int) and c > 0 for c in v), "must be a non-empty list of positive integers"),
    "model.hidden": (lambda v: all(isinstance(c, int) and c > 0 for c in v), "must be a list of positive integers"),
    "model.depth": (lambda v: len(v) > 0 and all(isinstance(c, int) and c > 0 for c in v), "must be a non-empty list of positive integers"),
    "model.width": (lambda v: v > 0, "must be > 0"),
    "optim.name": (lambda v: v in ("sgd", "adam", "adamw", "rmsprop"), "must be sgd, adam, adamw or rmsprop"),
    "optim.lr": (lambda v: v > 0, "must be > 0"),
    "optim.weight_decay": (lambda v: v >= 0, "must be >= 0"),
    "optim.momentum": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "optim.betas": (lambda v: len(v) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in v), "must be two numbers in [0, 1)"),
    "optim.clip_grad_norm": (lambda v: v is None or v > 0, "must be > 0 or null"),
    "optim.l1": (lambda v: v >= 0, "must be >= 0"),
    "optim.l2": (lambda v: v >= 0, "must be >= 0"),
    "schedule.name": (lambda v: v in ("constant", "step", "cosine", "onecycle"), "must be constant, step, cosine or onecycle"),
    "schedule.warmup_epochs": (lambda v: v >= 0, "must be >= 0"),
    "schedule.warmup_start_factor": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "schedule.min_lr_factor": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    "schedule.step_epochs": (lambda v: v > 0, "must be > 0"),
    "schedule.gamma": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "schedule.scale_lr": (lambda v: v in ("none", "linear"), "must be none or linear"),
    "schedule.reference_batch": (lambda v: v > 0, "must be > 0"),
    "train.epochs": (lambda v: v > 0, "must be > 0"),
    "train.batch_size": (lambda v: v > 0, "must be > 0"),
    "train.batch_scope": (lambda v: v in ("global", "per_rank"), "must be global or per_rank"),
    "train.accumulate": (lambda v: v > 0, "must be > 0"),
    "train.label_smoothing": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "train.amp": (lambda v: v in ("none", "bf16", "fp16"), "must be none, bf16 or fp16"),
    "train.device": (lambda v: v in ("auto", "cpu", "cuda"), "must be auto, cpu or cuda"),
    "train.threads": (lambda v: v >= 0, "must be >= 0"),
    "train.topk": (lambda v: v >= 1, "must be >= 1"),
    "train.log_every": (lambda v: v >= 1, "must be >= 1"),
    "train.max_steps_per_epoch": (lambda v: v >= 0, "must be >= 0"),
    "train.early_stopping.mode": (lambda v: v in ("max", "min"), "must be max or min"),
    "train.early_stopping.patience": (lambda v: v >= 0, "must be >= 0"),
    "train.checkpoint.every_epochs": (lambda v: v >= 1, "must be >= 1"),
    "train.checkpoint.every_minutes": (lambda v: v >= 0, "must be >= 0"),
    "train.checkpoint.keep_last": (lambda v: v >= 1, "must be >= 1"),
    "dist.backend": (lambda v: v in ("auto", "nccl", "gloo", "horovod"), "must be auto, nccl, gloo or horovod"),
    "dist.timeout_s": (lambda v: v > 0, "must be > 0"),
    "slurm.nodes": (lambda v: v >= 1, "must be >= 1"),
    "slurm.gpus_per_node": (lambda v: v >= 0, "must be >= 0"),
    "slurm.tasks_per_node": (lambda v: v is None or v >= 1, "must be >= 1 or null"),
    "slurm.cpus_per_task": (lambda v: v is None or v >= 1, "must be >= 1 or null"),
    "slurm.mem_gb": (lambda v: v is None or v > 0, "must be > 0 or null"),
    "slurm.max_requeues": (lambda v: v >= 0, "must be >= 0"),
    "monitor.interval_s": (lambda v: v >= 0.1, "must be >= 0.1 seconds"),
    "tensorboard.histograms_every": (lambda v: v >= 0, "must be >= 0 (0 = off)"),
    "tensorboard.embeddings_epoch": (lambda v: v is None or v >= 1, "must be >= 1 (a 1-based epoch) or null"),
    "tensorboard.embeddings_max": (lambda v: 1 <= v <= 10000, "must be between 1 and 10000"),
    "data.max_per_class": (lambda v: v >= 0, "must be >= 0"),
    "data.center_crop": (lambda v: v is None or 0 < v <= 1, "must be in (0, 1] or null"),
    "data.classes": (lambda v: v is None or (len(v) >= 2 and all(isinstance(c, str) for c in v)
                                             and len(set(v)) == len(v)),
                     "must be null or a list of at least two distinct class names"),
    "train.cache_features": (lambda v: v in ("auto", "always", "never"), "must be auto, always or never"),
    "ssl.method": (lambda v: v in ("none", "simclr"), "must be none or simclr"),
    "ssl.temperature": (lambda v: v > 0, "must be > 0"),
    "ssl.projection_dim": (lambda v: v > 0, "must be > 0"),
    "ssl.projection_hidden": (lambda v: v > 0, "must be > 0"),
    "ssl.crop_min_scale": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "ssl.max_aspect": (lambda v: v >= 1, "must be >= 1"),
    "ssl.color_jitter": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
    "ssl.grayscale": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
    "ssl.blur": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
    "ssl.optimizer": (lambda v: v in ("optim", "lars"), "must be optim or lars"),
}
