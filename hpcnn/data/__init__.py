"""Data: sources, image sets, batching and augmentation."""
