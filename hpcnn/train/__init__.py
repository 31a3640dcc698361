"""The training core: one loop for every launcher (it receives a World, never reads the environment)."""
