"""torch.distributed / Horovod behind one small interface (``Comm``); receives a World."""
from .comm import Comm, SingleComm
from .factory import make_comm

__all__ = ["Comm", "SingleComm", "make_comm"]
