"""The training core: one Trainer for every launcher and objective (it receives a World; only env/ reads launcher variables)."""
