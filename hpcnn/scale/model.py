"""An α-β model of data-parallel training: what a step costs on N ranks, from one rank's step and the links.

Every message of S bytes over a link costs ``α + S/β`` (latency α in seconds, bandwidth β in
bytes/s; Hockney's model). The allreduce variants (Thakur, Rabenseifner & Gropp 2005,
"Optimization of collective communication operations in MPICH", §4; reduction arithmetic ignored):

- **ring** (reduce-scatter then all-gather, each N−1 steps of S/N bytes; NCCL's ring):
  ``2(N−1)·α + 2(N−1)/N · S/β`` (Patarasuk & Yuan 2009 for its bandwidth optimality).
- **recursive_doubling** (the short-message algorithm: log2 N exchanges of the whole message):
  ``log2 N · (α + S/β)``.
- **rabenseifner** (the long-message algorithm: reduce-scatter by recursive halving, all-gather by
  recursive doubling): ``2·log2 N · α + 2(N−1)/N · S/β``.
- **binomial** (a binomial-tree reduce to one rank, then a binomial-tree broadcast; neither
  latency- nor bandwidth-optimal, what a naive MPI_Reduce + MPI_Bcast costs):
  ``2·⌈log2 N⌉ · (α + S/β)``. ``tree`` is its old name, still accepted.
- **auto**: per bucket, the fastest of the four — what a tuned library's size thresholds
  approximate (MPICH: recursive doubling up to 2 KiB, Rabenseifner above); an optimistic selector.

For N not a power of two, recursive doubling and Rabenseifner run on p' = 2^⌊log2 N⌋ ranks: the
r = N − p' extra ranks first hand their whole vector to a partner and get the result back at the
end, two more messages of S: ``+ 2(α + S/β)`` with p' in place of N above (MPICH and Open MPI do this).
NCCL's pipelined double binary tree is not modelled.

- **two levels** (``Links`` with ``intra``): a node's g ranks reduce-scatter over the intra-node
  link, the nodes allreduce their shards over the inter-node link (g shards side by side, sharing
  the node's inter-node bandwidth β_inter), then the node all-gathers:
  ``2(g−1)·α_i + 2(g−1)/g · S/β_i + inter(n nodes, S)`` with ``inter`` the chosen variant over n
  nodes on α_e, β_e. One node is the intra ring alone; one rank per node the inter one.
  Without ``intra`` every link is the inter-node one (a flat allreduce over all N ranks).
- **buckets**: gradients are reduced in buckets (DDP's ``bucket_cap_mb``, 25 MiB by default);
  each bucket is its own allreduce, so each pays the latency terms.
- **overlap**: bucket k is ready when the backward pass has produced its gradients; buckets
  become ready in proportion to their bytes, evenly over the backward pass, and are reduced
  one at a time in that order on a separate stream. What is left after backward ends is the
  exposed communication; it is never less than the last bucket (nothing overlaps it).
- **step**: ``t(N) = data + optimizer + forward + backward + exposed communication``. Data wait
  and forward+backward are per-image work, linear in the per-rank batch (strong scaling divides
  them by N, weak scaling keeps them); the optimizer step (and any per-step constant) is the same
  on every rank whatever its batch, in both modes. Neither data nor optimizer overlaps communication.

It breaks where its assumptions do: link contention with other jobs, stragglers (a step waits
for the slowest rank), topology (oversubscribed fat trees, rails, NVLink domains), an optimizer or
data wait that grows with N, per-rank batches too small to keep a GPU busy. See docs/scaling.md.
Pure Python, no torch: it runs on the login node.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

from ..errors import ConfigError

VARIANTS = ("ring", "recursive_doubling", "rabenseifner", "binomial")
ALGORITHMS = VARIANTS + ("auto",)   # auto: per bucket, the fastest variant
OLD_NAMES = {"tree": "binomial"}     # study files and scripts written before the variants were named
DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024  # torch DDP bucket_cap_mb=25
BACKWARD_FRACTION = 2 / 3                 # backward ≈ 2 × forward FLOPs, so 2/3 of forward+backward


@dataclass(frozen=True)
class Link:
    """One level of the network: latency ``alpha_s`` (s) and bandwidth ``beta_bytes_per_s`` (bytes/s)."""

    alpha_s: float
    beta_bytes_per_s: float

    def __post_init__(self):
        if not (self.alpha_s >= 0 and math.isfinite(self.alpha_s)):
            raise ConfigError(f"link latency alpha_s must be >= 0, got {self.alpha_s!r}", "links")
        if not (self.beta_bytes_per_s > 0 and math.isfinite(self.beta_bytes_per_s)):
            raise ConfigError(f"link bandwidth beta_bytes_per_s must be > 0, got {self.beta_bytes_per_s!r}", "links")

    def message_s(self, size_bytes: float) -> float:
        """One message of ``size_bytes``: α + S/β."""
        return self.alpha_s + size_bytes / self.beta_bytes_per_s


@dataclass(frozen=True)
class Links:
    """The inter-node link, and optionally the intra-node one (then allreduces are two-level)."""

    inter: Link
    intra: Link | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def ring_allreduce_s(size_bytes: float, ranks: int, link: Link) -> float:
    """Ring allreduce of ``size_bytes`` over ``ranks``: 2(N−1)·α + 2(N−1)/N · S/β (0 for one rank)."""
    n = _ranks(ranks)
    return 2 * (n - 1) * link.alpha_s + 2 * (n - 1) / n * size_bytes / link.beta_bytes_per_s


def _power_of_two_below(n: int) -> int:
    """p' = 2^⌊log2 n⌋, the ranks recursive doubling and halving run on."""
    return 1 << (n.bit_length() - 1)


def _fold_s(size_bytes: float, n: int, link: Link) -> float:
    """The extra ranks of a non-power-of-two N: send the vector to a partner, get the result back."""
    return 0.0 if n == _power_of_two_below(n) else 2 * link.message_s(size_bytes)


def recursive_doubling_allreduce_s(size_bytes: float, ranks: int, link: Link) -> float:
    """Recursive doubling: log2 N · (α + S/β) for N a power of two, else on p' = 2^⌊log2 N⌋ plus the fold."""
    n = _ranks(ranks)
    p = _power_of_two_below(n)
    return math.log2(p) * link.message_s(size_bytes) + _fold_s(size_bytes, n, link)


def rabenseifner_allreduce_s(size_bytes: float, ranks: int, link: Link) -> float:
    """Reduce-scatter (recursive halving) + all-gather (recursive doubling): 2·log2 N·α + 2(N−1)/N · S/β
    for N a power of two, else on p' = 2^⌊log2 N⌋ plus the fold."""
    n = _ranks(ranks)
    p = _power_of_two_below(n)
    return (2 * math.log2(p) * link.alpha_s + 2 * (p - 1) / p * size_bytes / link.beta_bytes_per_s
            + _fold_s(size_bytes, n, link))


def binomial_allreduce_s(size_bytes: float, ranks: int, link: Link) -> float:
    """Binomial-tree reduce, then binomial-tree broadcast: 2·⌈log2 N⌉·(α + S/β) (0 for one rank)."""
    n = _ranks(ranks)
    return 2 * math.ceil(math.log2(n)) * link.message_s(size_bytes)


tree_allreduce_s = binomial_allreduce_s  # the old name of the binomial variant
_FLAT = {"ring": ring_allreduce_s, "recursive_doubling": recursive_doubling_allreduce_s,
         "rabenseifner": rabenseifner_allreduce_s, "binomial": binomial_allreduce_s}


def algorithm_name(name: str, where: str = "algorithm", what: str = "allreduce algorithm") -> str:
    """The variant's name (``tree`` -> ``binomial``, its old name), or a ConfigError listing the valid ones."""
    name = OLD_NAMES.get(name, name) if isinstance(name, str) else name
    if name not in ALGORITHMS:
        raise ConfigError(f"{what} must be one of {', '.join(ALGORITHMS)}, got {name!r}", where,
                          "auto takes the fastest variant per bucket; tree is the old name of binomial")
    return name


def allreduce_choice(size_bytes: float, ranks: int, links: Links, ranks_per_node: int = 1,
                     algorithm: str = "ring") -> tuple[float, str | None]:
    """(seconds, variant used between nodes) of one allreduce; the variant is None when one node or rank
    holds every rank (no inter-node allreduce, nothing to choose). See ``allreduce_s``."""
    algorithm = algorithm_name(algorithm)
    n, g = _ranks(ranks), max(1, min(int(ranks_per_node), _ranks(ranks)))
    intra, members, link = 0.0, n, links.inter
    if links.intra is not None and g > 1:
        intra = ring_allreduce_s(size_bytes, g, links.intra)  # reduce-scatter + all-gather within the node
        members = math.ceil(n / g)
    if members == 1:
        return intra, None
    names = VARIANTS if algorithm == "auto" else (algorithm,)
    seconds, name = min((_FLAT[v](size_bytes, members, link), v) for v in names)
    return intra + seconds, name


def allreduce_s(size_bytes: float, ranks: int, links: Links, ranks_per_node: int = 1,
                algorithm: str = "ring") -> float:
    """One allreduce of ``size_bytes`` over ``ranks`` placed ``ranks_per_node`` to a node.

    With ``links.intra`` and several ranks per node: intra-node reduce-scatter, inter-node
    ``algorithm`` over the nodes, intra-node all-gather. Without it: one flat ``algorithm`` over
    every rank on the inter-node link. ``auto``: the fastest variant for this size.
    """
    return allreduce_choice(size_bytes, ranks, links, ranks_per_node, algorithm)[0]


def buckets_of(grad_bytes: float, bucket_bytes: float | Sequence[float] | None = None) -> list[float]:
    """The gradient split into buckets: an explicit list is used as is; a cap splits evenly-full buckets
    (the last one holds the rest), as DDP fills them."""
    if isinstance(bucket_bytes, (list, tuple)):
        sizes = [float(b) for b in bucket_bytes]
        if not sizes or any(b <= 0 for b in sizes):
            raise ConfigError(f"bucket sizes must be > 0, got {list(bucket_bytes)}", "bucket_bytes")
        return sizes
    if grad_bytes <= 0:
        raise ConfigError(f"gradient bytes must be > 0, got {grad_bytes}", "grad_bytes")
    cap = float(bucket_bytes or DEFAULT_BUCKET_BYTES)
    if cap <= 0:
        raise ConfigError(f"bucket_bytes must be > 0, got {bucket_bytes}", "bucket_bytes")
    full = int(grad_bytes // cap)
    rest = grad_bytes - full * cap
    return [cap] * full + ([rest] if rest > 0 else [])


def exposed_comm_s(bucket_times: Sequence[float], bucket_bytes: Sequence[float], backward_s: float,
                   overlap: bool = True) -> float:
    """Communication time left after the backward pass ends.

    Bucket k is ready at ``backward_s × (bytes of buckets 0..k) / total bytes``; buckets are reduced
    one after another, each starting when it is ready and the previous one is done. Without
    overlap, every bucket waits for the end of backward (the sum of their times).
    """
    if not overlap:
        return float(sum(bucket_times))
    total = float(sum(bucket_bytes))
    done, produced = 0.0, 0.0
    for seconds, size in zip(bucket_times, bucket_bytes):
        produced += size
        ready = backward_s * produced / total if total else backward_s
        done = max(done, ready) + seconds
    return max(0.0, done - backward_s)


@dataclass(frozen=True)
class StepProfile:
    """One rank's step with no communication (what N = 1 measures), at ``batch_per_rank`` images.

    ``compute_s`` is forward+backward and ``data_s`` the data wait: per-image work, linear in the
    batch. ``optimizer_s`` is the optimizer step and any other per-step constant: every rank runs
    the whole optimizer step whatever its batch. Neither data nor optimizer overlaps communication;
    ``backward_fraction`` of compute is the backward pass buckets overlap with.
    """

    compute_s: float
    grad_bytes: float
    batch_per_rank: float = 1.0
    optimizer_s: float = 0.0
    bucket_bytes: float | tuple | None = None
    backward_fraction: float = BACKWARD_FRACTION
    data_s: float = 0.0

    @property
    def step_s(self) -> float:
        return self.compute_s + self.data_s + self.optimizer_s


@dataclass
class Prediction:
    ranks: int
    ranks_per_node: int
    nodes: int
    batch_per_rank: float
    step_s: float
    compute_s: float
    comm_s: float            # every bucket's allreduce, added up
    exposed_comm_s: float    # what the step waits for after backward
    images_per_second: float
    speedup: float
    efficiency: float
    buckets: int
    data_s: float = 0.0      # data wait at this per-rank batch
    optimizer_s: float = 0.0  # per-step constant, the same at every N
    algorithms: dict = field(default_factory=dict)           # variant used between nodes -> buckets
    comm_by_algorithm_s: dict = field(default_factory=dict)  # every variant's comm_s, to compare
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def predict(profile: StepProfile, links: Links, ranks: Iterable[int], ranks_per_node: int = 1,
            mode: str = "weak", algorithm: str = "ring", overlap: bool = True) -> list[Prediction]:
    """Step time, throughput, speed-up and efficiency at each rank count.

    ``mode`` weak: every rank keeps ``profile.batch_per_rank``; strong: the global batch
    ``profile.batch_per_rank`` is split over N ranks (compute and data wait shrink with it; the
    optimizer step does not). Ranks fill nodes ``ranks_per_node`` at a time.
    Efficiency = throughput(N) / (N · throughput(1)).
    """
    if mode not in ("weak", "strong"):
        raise ConfigError(f"mode must be weak or strong, got {mode!r}", "mode")
    if not 0 <= profile.backward_fraction <= 1:
        raise ConfigError(f"backward_fraction must be in [0, 1], got {profile.backward_fraction}", "backward_fraction")
    algorithm = algorithm_name(algorithm)
    buckets = buckets_of(profile.grad_bytes, profile.bucket_bytes)
    base = profile.batch_per_rank / profile.step_s
    out = []
    for n in ranks:
        n = _ranks(n)
        g = max(1, min(int(ranks_per_node), n))
        scale = 1.0 if mode == "weak" else 1.0 / n
        compute, data = profile.compute_s * scale, profile.data_s * scale
        chosen = [allreduce_choice(b, n, links, g, algorithm) for b in buckets]
        times = [seconds for seconds, _ in chosen]
        exposed = exposed_comm_s(times, buckets, compute * profile.backward_fraction, overlap) if n > 1 else 0.0
        step = compute + data + profile.optimizer_s + exposed
        batch = profile.batch_per_rank * scale
        throughput = n * batch / step
        out.append(Prediction(
            n, g, math.ceil(n / g), batch, step, compute, float(sum(times)), exposed, throughput, throughput / base,
            throughput / (n * base), len(buckets), data_s=data, optimizer_s=profile.optimizer_s,
            algorithms=dict(Counter(name for _, name in chosen if name)),
            comm_by_algorithm_s={v: float(sum(allreduce_s(b, n, links, g, v) for b in buckets)) for v in VARIANTS}))
    return out


def efficiency(throughput_n: float, ranks: int, throughput_1: float) -> float:
    """Parallel efficiency: throughput(N) / (N · throughput(1))."""
    return throughput_n / (_ranks(ranks) * throughput_1)


def links_from_dict(data: dict, where: str = "links") -> Links:
    """``{inter: {alpha_s, beta_bytes_per_s}, intra: {...}}`` (intra optional) -> Links."""
    if not isinstance(data, dict) or "inter" not in data:
        raise ConfigError("links need an 'inter' level: {inter: {alpha_s: .., beta_bytes_per_s: ..}, intra: {..}}",
                          where)
    unknown = sorted(set(data) - {"inter", "intra"})
    if unknown:
        raise ConfigError(f"unknown key '{unknown[0]}' in links", where, "valid keys here: inter, intra")

    def level(key):
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict) or set(value) != {"alpha_s", "beta_bytes_per_s"}:
            raise ConfigError(f"'links.{key}' must be {{alpha_s: SECONDS, beta_bytes_per_s: BYTES_PER_S}}, "
                              f"got {value!r}", where)
        try:
            return Link(float(value["alpha_s"]), float(value["beta_bytes_per_s"]))
        except (TypeError, ValueError):
            raise ConfigError(f"'links.{key}' values must be numbers, got {value!r}", where) from None

    return Links(inter=level("inter"), intra=level("intra"))


def link_from_allreduce_json(data: dict, where: str) -> tuple[str, Link]:
    """A ``hpcnn bench allreduce`` result -> ("intra" if it ran on one node else "inter", Link)."""
    try:
        link = Link(float(data["alpha_s"]), float(data["beta_bytes_per_s"]))
    except (KeyError, TypeError, ValueError):
        raise ConfigError("not a `hpcnn bench allreduce` result: needs numeric alpha_s and beta_bytes_per_s",
                          where) from None
    nodes = data.get("nodes")
    one_node = isinstance(nodes, list) and len(nodes) == 1 and int(data.get("world_size", 2) or 2) > 1
    return ("intra" if one_node else "inter"), link


def _ranks(n) -> int:
    if isinstance(n, bool) or int(n) != n or int(n) < 1:
        raise ConfigError(f"a rank count must be a whole number >= 1, got {n!r}", "ranks")
    return int(n)


__all__ = ["ALGORITHMS", "BACKWARD_FRACTION", "DEFAULT_BUCKET_BYTES", "Link", "Links", "OLD_NAMES", "Prediction",
           "StepProfile", "VARIANTS", "algorithm_name", "allreduce_choice", "allreduce_s", "binomial_allreduce_s",
           "buckets_of", "efficiency", "exposed_comm_s", "link_from_allreduce_json", "links_from_dict", "predict",
           "rabenseifner_allreduce_s", "recursive_doubling_allreduce_s", "ring_allreduce_s", "tree_allreduce_s"]
