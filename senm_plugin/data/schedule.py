"""The per-epoch order of samples drawn from several sources (domains of TriDomainDataset, sources of
MixedPairDataset) in fixed shares."""
import math
from fractions import Fraction

import numpy as np


def domain_schedule(sizes, weights, seed, num_samples=None):
    """Per-index (domain, item) arrays of one epoch: domain d fills a share weights[d] / sum(weights) of the indices.

    The length is ``num_samples`` or, by default, the smallest length in which every item of every domain appears at
    least once (max_d ceil(N_d / p_d)); a small domain repeats its items in turn. Both arrays are a deterministic
    function of (sizes, weights, seed). Shares are exact: counts are floors of p_d * length, remainders go to the
    largest fractions.
    """
    p = [Fraction(w).limit_denominator(10**6) for w in weights]
    total = sum(p)
    p = [w / total for w in p]
    active = [d for d in range(len(sizes)) if p[d] > 0]
    length = num_samples or max(math.ceil(sizes[d] / p[d]) for d in active)
    counts = [math.floor(p[d] * length) if d in active else 0 for d in range(len(sizes))]
    by_fraction = sorted(active, key=lambda d: (-(p[d] * length - counts[d]), d))
    for d in by_fraction[:length - sum(counts)]:
        counts[d] += 1
    rng = np.random.default_rng(seed)
    domain = np.repeat(np.arange(len(sizes), dtype=np.int8), counts)
    rng.shuffle(domain)
    item = np.empty(length, dtype=np.int64)
    for d in active:
        where = np.flatnonzero(domain == d)
        order = rng.permutation(sizes[d])  # which item comes first in the cycle through domain d
        item[where] = order[np.arange(len(where)) % sizes[d]]
    return domain, item
