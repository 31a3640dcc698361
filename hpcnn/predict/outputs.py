"""Prediction files: CSV rows streamed as they are predicted, merged in input order, or Parquet.

Rows are written to CSV first (a shard, a rank's part, or the output itself), so memory stays
bounded whatever the number of inputs; merging copies the bodies of the parts behind one
header, byte for byte. A ``.parquet`` output is converted from those CSV rows in row groups
(pyarrow, optional). Torch-free: the login node merges a Slurm array's shards.
"""
from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import IO, Iterable, Sequence

from ..errors import ConfigError
from ..files import atomic_write, check_writable

PARQUET_SUFFIX = ".parquet"
ROW_GROUP = 65536


def header(k: int) -> list[str]:
    return ["path"] + [f"{w}{i}" for i in range(1, k + 1) for w in ("class", "prob")] + ["error"]


def header_text(k: int) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(header(k))
    return out.getvalue()


def is_parquet(out: str | Path) -> bool:
    return str(out).lower().endswith(PARQUET_SUFFIX)


def check_output(out: str | Path) -> None:
    """Fail before any work when the output cannot be written: its place (created and probed), its format."""
    check_writable(out, "--out")
    if is_parquet(out):
        try:
            import pyarrow  # noqa: F401
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise ConfigError("writing .parquet needs pyarrow, which is not installed", str(out),
                              "pip install 'hpcnn[parquet]', or write .csv") from None


class CsvRows:
    """A CSV writer over a binary file: the header, then rows as they come."""

    def __init__(self, f: IO[bytes], k: int):
        self.text = io.TextIOWrapper(f, encoding="utf-8", newline="", write_through=True)
        self.writer = csv.writer(self.text)
        self.writer.writerow(header(k))

    def write(self, rows: Iterable[Sequence]) -> None:
        self.writer.writerows(rows)

    def close(self) -> None:
        self.text.flush()
        self.text.detach()


def _copy_body(part: Path, head: str, dst: IO[bytes]) -> None:
    with open(part, "rb") as src:
        first = src.read(len(head.encode()))
        if first != head.encode():
            raise ConfigError("a part of the predictions has an unexpected header", str(part),
                              "was it written with a different --topk?")
        shutil.copyfileobj(src, dst, 1 << 20)


def _parquet(parts: Sequence[Path], k: int, f: IO[bytes]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = header(k)
    schema = pa.schema([(n, pa.float64() if n.startswith("prob") else pa.string()) for n in names])
    writer = pq.ParquetWriter(f, schema)

    def flush(rows: list[list[str]]) -> None:
        columns = list(zip(*rows)) if rows else [[] for _ in names]
        arrays = [pa.array([float(v) if v != "" else None for v in col], pa.float64()) if n.startswith("prob")
                  else pa.array(list(col), pa.string()) for n, col in zip(names, columns)]
        writer.write_table(pa.Table.from_arrays(arrays, schema=schema))

    rows: list[list[str]] = []
    groups = 0
    for part in parts:
        with open(part, newline="", encoding="utf-8") as src:
            reader = csv.reader(src)
            if next(reader, None) != names:
                raise ConfigError("a part of the predictions has an unexpected header", str(part))
            for row in reader:
                rows.append(row)
                if len(rows) >= ROW_GROUP:
                    flush(rows)
                    rows, groups = [], groups + 1
    if rows or not groups:
        flush(rows)
    writer.close()


def merge(parts: Sequence[Path], out: str | Path, k: int) -> Path:
    """Write ``out`` (CSV or Parquet, by its suffix) from CSV parts, in the order given, atomically."""
    check_output(out)
    if is_parquet(out):
        return atomic_write(out, lambda f: _parquet(parts, k, f))
    head = header_text(k)

    def write(f: IO[bytes]) -> None:
        f.write(head.encode())
        for part in parts:
            _copy_body(Path(part), head, f)

    return atomic_write(out, write)


def read_rows(path: str | Path) -> list[dict]:
    """A prediction file (CSV or Parquet) as dicts, for tests and notebooks (holds it all in memory)."""
    if is_parquet(path):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


__all__ = ["CsvRows", "check_output", "header", "header_text", "is_parquet", "merge", "read_rows"]
