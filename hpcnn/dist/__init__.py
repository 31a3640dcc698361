"""torch.distributed / Horovod behind one small interface (``Comm``); receives a World. The device choice."""
from .comm import Comm, SingleComm
from .device import choose_device
from .factory import make_comm

__all__ = ["Comm", "SingleComm", "choose_device", "make_comm"]
