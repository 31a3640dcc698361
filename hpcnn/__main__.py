"""``python -m hpcnn`` works like ``hpcnn`` (so ``torchrun -m hpcnn train ...`` works)."""
import sys

from .cli import main

sys.exit(main())
