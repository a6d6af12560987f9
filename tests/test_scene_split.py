"""The fidelity benchmark's scene split: disjoint roles, deterministic by seed, independent of the input order."""
import numpy as np
import pytest

from senm_plugin.data.scene_split import ROLES, split_scenes, tiles


def test_split_is_disjoint_deterministic_and_order_free():
    names = [f'cam{c}_iso{i}_{k}' for c in range(3) for i in (1600, 3200) for k in range(3)]
    counts = {'paired': 3, 'source': 4, 'target': 4, 'test': 5}
    split = split_scenes(names, counts, seed=0)
    assert {r: len(v) for r, v in split.items()} == counts
    used = [n for r in ROLES for n in split[r]]
    assert len(used) == len(set(used)) == 16 and set(used) <= set(names)
    assert split_scenes(list(reversed(names)), counts, seed=0) == split  # the order given does not matter
    assert split_scenes(names, counts, seed=1) != split
    partial = split_scenes(names, {'paired': 2, 'test': 2}, seed=0)
    assert partial['source'] == partial['target'] == [] and len(partial['paired']) == 2
    with pytest.raises(ValueError, match='19 scenes asked for'):
        split_scenes(names, {'paired': 19})
    with pytest.raises(ValueError, match='unknown roles'):
        split_scenes(names, {'train': 1})


def test_tiles_cover_the_image_row_major():
    img = np.arange(10 * 9 * 3).reshape(10, 9, 3)
    parts = tiles(img, 4)
    assert len(parts) == 4 and all(p.shape == (4, 4, 3) for p in parts)
    assert np.array_equal(parts[1], img[0:4, 4:8]) and np.array_equal(parts[2], img[4:8, 0:4])
