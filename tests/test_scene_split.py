"""The fidelity benchmark's scene split: disjoint roles, deterministic by seed, independent of the input order."""
import random

import numpy as np
import pytest

from senm_plugin.data.scene_split import ROLES, condition, split_scenes, tiles


@pytest.mark.parametrize('how', ['random', 'stratified'])
def test_split_is_disjoint_deterministic_and_order_free(how):
    names = [f'cam{c}_iso{i}_{k}' for c in range(3) for i in (1600, 3200) for k in range(3)]
    counts = {'paired': 3, 'source': 4, 'target': 4, 'test': 5}
    split = split_scenes(names, counts, seed=0, how=how)
    assert {r: len(v) for r, v in split.items()} == counts
    used = [n for r in ROLES for n in split[r]]
    assert len(used) == len(set(used)) == 16 and set(used) <= set(names)
    assert split_scenes(list(reversed(names)), counts, seed=0, how=how) == split  # the order given does not matter
    assert split_scenes(names, counts, seed=1, how=how) != split
    partial = split_scenes(names, {'paired': 2, 'test': 2}, seed=0, how=how)
    assert partial['source'] == partial['target'] == [] and len(partial['paired']) == 2
    with pytest.raises(ValueError, match='19 scenes asked for'):
        split_scenes(names, {'paired': 19}, how=how)
    with pytest.raises(ValueError, match='unknown roles'):
        split_scenes(names, {'train': 1}, how=how)


def test_random_split_is_the_seeded_shuffle():
    names = [f's{k:02d}' for k in range(12)]
    split = split_scenes(names, {'paired': 3, 'source': 3, 'target': 3, 'test': 3}, seed=0)
    order = sorted(names)
    random.Random(0).shuffle(order)
    assert [split[r] for r in ROLES] == [sorted(order[k:k + 3]) for k in (0, 3, 6, 9)]
    with pytest.raises(ValueError, match='unknown split'):
        split_scenes(names, {'paired': 1}, how='by-iso')


def test_stratified_split_shows_every_held_out_condition_in_the_noisy_only_role():
    # the CC set's shape: five conditions of three scenes
    names = [f'{c}_{k}' for c in ('5dmark3_iso3200', 'd600_iso3200', 'd800_iso1600', 'd800_iso3200', 'd800_iso6400')
             for k in (1, 2, 3)]
    assert condition('d800_iso6400_2') == 'd800_iso6400' and condition('scene') == 'scene'
    counts = {'paired': 3, 'source': 4, 'target': 4, 'test': 4}
    for seed in range(6):
        split = split_scenes(names, counts, seed=seed, how='stratified')
        assert {r: len(v) for r, v in split.items()} == counts
        test_conditions = [condition(n) for n in split['test']]
        assert len(set(test_conditions)) == 4  # one held-out scene per condition
        assert set(test_conditions) <= {condition(n) for n in split['target']}
        # paired scenes spread over conditions before any condition gives two
        assert len({condition(n) for n in split['paired']}) == 3


def test_tiles_cover_the_image_row_major():
    img = np.arange(10 * 9 * 3).reshape(10, 9, 3)
    parts = tiles(img, 4)
    assert len(parts) == 4 and all(p.shape == (4, 4, 3) for p in parts)
    assert np.array_equal(parts[1], img[0:4, 4:8]) and np.array_equal(parts[2], img[4:8, 0:4])
