"""A fixed, seeded split of real clean/noisy scenes into the roles of a semi-supervised noise-modelling benchmark.

Each scene serves one role only (paired, clean-only, noisy-only or held out), so no scene's content or noise is seen
in two roles; the order of the scenes given does not matter, only their names and the seed.
"""
import random

ROLES = ('paired', 'source', 'target', 'test')


def split_scenes(names, counts, seed=0):
    """Assign ``counts[role]`` scenes to each role of ROLES (``counts`` may leave roles out); returns {role: names}.

    The names are sorted first, then shuffled with ``seed``, so the same set and seed always give the same split.
    """
    names = sorted(set(names))
    unknown = sorted(set(counts) - set(ROLES))
    if unknown:
        raise ValueError(f'unknown roles {unknown}; roles are {list(ROLES)}')
    need = sum(counts.values())
    if any(n < 0 for n in counts.values()) or need > len(names):
        raise ValueError(f'{need} scenes asked for ({counts}) but {len(names)} given')
    random.Random(seed).shuffle(names)
    split, start = {}, 0
    for role in ROLES:
        n = counts.get(role, 0)
        split[role] = sorted(names[start:start + n])
        start += n
    return split


def tiles(img, size):
    """The non-overlapping ``size`` x ``size`` tiles of ``img`` in row-major order (a border that does not fill a
    whole tile is dropped)."""
    h, w = img.shape[:2]
    return [img[t:t + size, s:s + size] for t in range(0, h - size + 1, size) for s in range(0, w - size + 1, size)]
