"""Throughput measurement without epochs: ``hpcnn bench`` (a training config) and ``hpcnn bench allreduce``.

``run.bench_from_dict`` is the entry the scaling studies (``hpcnn scale``) call on every rank.
"""
