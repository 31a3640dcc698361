"""Ends a distributed run promptly when a peer rank dies, and names that rank.

Each rank bumps a heartbeat counter in the rendezvous store every second and reads the
others'. A counter that stops changing for ``stale_s`` (a SIGKILLed or OOM-killed rank),
a failure note written by a rank that raised, or losing the store itself (the master
died) makes this rank log one clear line and exit non-zero instead of waiting in a
collective for NCCL's 30-minute default. Checkpoints are written atomically, so the
newest one on disk stays loadable.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
import threading
import time

log = logging.getLogger("hpcnn.dist")

EXIT_PEER_FAILED = 17


class Watchdog:
    def __init__(self, world, timeout_s: float, prefix: str, interval_s: float = 1.0):
        self.world = world
        self.prefix = prefix
        self.interval_s = interval_s
        self.stale_s = max(5.0, min(float(timeout_s), 60.0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpcnn-watchdog", daemon=True)
        self._store = None

    def _connect(self):
        import torch.distributed as dist

        return dist.TCPStore(self.world.master_addr, int(self.world.master_port), self.world.world_size,
                             is_master=False, timeout=datetime.timedelta(seconds=self.stale_s),
                             wait_for_workers=False)

    def start(self) -> None:
        self._store = self._connect()
        self._store.set(f"{self.prefix}/host/{self.world.rank}", f"{self.world.hostname} pid {os.getpid()}")
        self._thread.start()

    def stop(self) -> None:
        """This rank is finishing normally: peers must not take its silence for a death."""
        self._stop.set()
        with contextlib.suppress(Exception):
            if self._store is not None:
                self._store.set(f"{self.prefix}/done/{self.world.rank}", "1")
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def report_failure(self, reason: str) -> None:
        """Called by a rank that is about to fail, so the others can name it."""
        with contextlib.suppress(Exception):
            if self._store is not None:
                self._store.set(f"{self.prefix}/failed/{self.world.rank}", reason[:500])

    def diagnose(self, wait_s: float = 3.0) -> str | None:
        """After a collective failed: which peer is gone? Failure notes first, then stalled heartbeats."""
        self._stop.set()  # the background checks stop; we answer here instead
        try:
            store = self._connect()
            peers = [r for r in range(self.world.world_size) if r != self.world.rank
                     and not store.check([f"{self.prefix}/done/{r}"])]
            for r in peers:
                key = f"{self.prefix}/failed/{r}"
                if store.check([key]):
                    return f"rank {r} ({self._host_of(r)}) failed: {store.get(key).decode()}"

            def beats():
                return {r: store.get(f"{self.prefix}/hb/{r}") if store.check([f"{self.prefix}/hb/{r}"]) else None
                        for r in peers}

            before = beats()
            time.sleep(wait_s)  # heartbeats tick every interval_s: a live peer's counter moves meanwhile
            after = beats()
            dead = [r for r in peers if before[r] == after[r]]
            if dead:
                return ", ".join(f"rank {r} ({self._host_of(r)})" for r in dead) + " stopped responding (killed?)"
            return None
        except Exception:
            return (f"lost contact with rank 0 (the master at {self.world.master_addr}:{self.world.master_port}); "
                    "it has probably died")

    def _host_of(self, rank: int) -> str:
        try:
            key = f"{self.prefix}/host/{rank}"
            return self._store.get(key).decode() if self._store.check([key]) else "unknown host"
        except Exception:
            return "unknown host"

    def _die(self, message: str) -> None:
        if self._stop.is_set():
            return
        log.error("%s — ending rank %d (%s)", message, self.world.rank, self.world.hostname)
        for h in logging.getLogger("hpcnn").handlers:
            h.flush()
        sys.stderr.flush()
        os._exit(EXIT_PEER_FAILED)

    def _run(self) -> None:
        me, n = self.world.rank, self.world.world_size
        beat = 0
        last_value = {r: None for r in range(n) if r != me}
        last_change = {r: time.monotonic() for r in last_value}
        while not self._stop.wait(self.interval_s):
            try:
                beat += 1
                self._store.set(f"{self.prefix}/hb/{me}", str(beat))
                for r in last_value:
                    if self._store.check([f"{self.prefix}/done/{r}"]):
                        continue
                    failed = f"{self.prefix}/failed/{r}"
                    if self._store.check([failed]):
                        self._die(f"rank {r} ({self._host_of(r)}) failed: {self._store.get(failed).decode()}")
                    key = f"{self.prefix}/hb/{r}"
                    value = self._store.get(key) if self._store.check([key]) else None
                    now = time.monotonic()
                    if value != last_value[r]:
                        last_value[r], last_change[r] = value, now
                    elif now - last_change[r] > self.stale_s:
                        self._die(f"rank {r} ({self._host_of(r)}) stopped responding: "
                                  f"no heartbeat for {now - last_change[r]:.0f} s (killed or out of memory?)")
            except Exception as err:  # the store lives with the master: losing it means rank 0 died
                if self._stop.is_set():
                    return
                self._die(f"lost contact with rank 0 (the master at {self.world.master_addr}:"
                          f"{self.world.master_port}): {err}")
