"""Grad-CAM grids: tile titles stay inside their column, with the galaxies' long class names."""
from __future__ import annotations

import itertools

import torch

from hpcnn.data.synthetic import CLASSES
from hpcnn.explain.report import tile_figure, tile_title


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_titles_of_neighbouring_tiles_do_not_overlap_each_other_or_images():
    pictures = [(torch.zeros(3, 32, 32, dtype=torch.uint8), torch.zeros(32, 32)) for _ in range(16)]
    tiles = [{"true": i % 8, "pred": (i + 1) % 8, "prob": 0.5} for i in range(16)]
    fig = tile_figure(pictures, tiles, CLASSES, "Grad-CAM on features.3, test split: most confident mistakes")
    fig.canvas.draw()  # positions as saved (aspect applied)
    renderer = fig.canvas.get_renderer()
    axes = fig.axes
    titles = [ax.title.get_window_extent(renderer) for ax in axes]
    images = [ax.images[0].get_window_extent(renderer) for ax in axes]
    for a, b in itertools.combinations(range(len(axes)), 2):
        assert not _overlap(titles[a], titles[b]), (axes[a].get_title(), axes[b].get_title())
    for t, i in itertools.product(range(len(axes)), repeat=2):
        assert not _overlap(titles[t], images[i]), (axes[t].get_title(), i)
    assert not any(_overlap(fig._suptitle.get_window_extent(renderer), t) for t in titles)


def test_long_class_names_are_shortened_in_titles_only():
    assert tile_title("smooth_inbetween", "barred_spiral", 0.876) == "true smooth_inbetween\npred barred_spiral (0.88)"
    assert tile_title("a_very_long_class_name_indeed", "x", 0.5) == "true a_very_long_cla…\npred x (0.50)"
