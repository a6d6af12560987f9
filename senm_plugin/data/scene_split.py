"""A fixed, seeded split of real clean/noisy scenes into the roles of a semi-supervised noise-modelling benchmark.

Each scene serves one role only (paired, clean-only, noisy-only or held out), so no scene's content or noise is seen
in two roles; the order of the scenes given does not matter, only their names and the seed.

Two ways to split: ``random`` shuffles all scenes; ``stratified`` groups scenes by condition (the name without its
trailing number, e.g. ``d800_iso6400`` for ``d800_iso6400_2``) and gives every held-out condition a noisy-only
scene of the same condition where the group has one. The second is the setting SeNM-VAE is built for (paper Sec.
4.1: the unpaired noisy images come from the camera and settings the denoiser will face); a random split of a small
set can hold out a condition that no training role shows.
"""
import random
import re

ROLES = ('paired', 'source', 'target', 'test')
SPLITS = ('stratified', 'random')


def condition(name):
    """The condition a scene belongs to: its name without a trailing ``_<n>`` / ``-<n>`` (the whole name if none)."""
    return re.sub(r'[_-]\d+$', '', name) or name


def _check(names, counts):
    unknown = sorted(set(counts) - set(ROLES))
    if unknown:
        raise ValueError(f'unknown roles {unknown}; roles are {list(ROLES)}')
    need = sum(counts.values())
    if any(n < 0 for n in counts.values()) or need > len(names):
        raise ValueError(f'{need} scenes asked for ({counts}) but {len(names)} given')


def _round_robin(groups, order):
    """The scenes of ``groups`` ({condition: [scenes]}) taken one per condition in ``order``, pass after pass."""
    queue, depth = [], max((len(v) for v in groups.values()), default=0)
    for k in range(depth):
        queue += [groups[g][k] for g in order if k < len(groups[g])]
    return queue


def split_scenes(names, counts, seed=0, how='random'):
    """Assign ``counts[role]`` scenes to each role of ROLES (``counts`` may leave roles out); returns {role: names}.

    The names are sorted first, then shuffled with ``seed``, so the same set and seed always give the same split.
    ``how='stratified'`` takes the held-out scenes one per condition, then a noisy-only scene from each held-out
    scene's condition, then the paired and clean-only scenes round-robin over the conditions.
    """
    names = sorted(set(names))
    _check(names, counts)
    if how not in SPLITS:
        raise ValueError(f'unknown split {how!r}; use one of {list(SPLITS)}')
    rng = random.Random(seed)
    if how == 'random':
        rng.shuffle(names)
        queue = {role: names for role in ROLES}
    else:
        groups = {}
        for n in names:
            groups.setdefault(condition(n), []).append(n)
        order = sorted(groups)
        rng.shuffle(order)
        for g in order:
            rng.shuffle(groups[g])
        test = _round_robin(groups, order)[:counts.get('test', 0)]
        rest = {g: [n for n in groups[g] if n not in test] for g in order}
        # one noisy-only scene per held-out scene, from its condition, first
        same = [rest[condition(t)][0] for t in test if rest[condition(t)]]
        same = list(dict.fromkeys(same))
        queue = {'test': test, 'target': same + [n for n in _round_robin(rest, order) if n not in same]}
        queue['paired'] = queue['source'] = _round_robin(rest, order)
    split, taken = {}, set()
    for role in ('test', 'target', 'paired', 'source') if how == 'stratified' else ROLES:
        pick = [n for n in queue[role] if n not in taken][:counts.get(role, 0)]
        taken.update(pick)
        split[role] = sorted(pick)
    return {role: split[role] for role in ROLES}


def tiles(img, size):
    """The non-overlapping ``size`` x ``size`` tiles of ``img`` in row-major order (a border that does not fill a
    whole tile is dropped)."""
    h, w = img.shape[:2]
    return [img[t:t + size, s:s + size] for t in range(0, h - size + 1, size) for s in range(0, w - size + 1, size)]
