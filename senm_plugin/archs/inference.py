"""Test-time inference helpers for image-to-image networks: tiled restoration in bounded memory, x8 self-ensemble,
channels-last execution."""
import contextlib

import torch


@contextlib.contextmanager
def channels_last_weights(module, enabled=True):
    """Hold ``module``'s conv weights in channels-last layout inside the block (oneDNN's fast CPU convolutions for
    inference) and put them back after, so that an optimiser's state still matches the parameters' layout."""
    if not enabled:
        yield module
        return
    module.to(memory_format=torch.channels_last)
    try:
        yield module
    finally:
        module.to(memory_format=torch.contiguous_format)


def _tiles(length, tile_size, stride, multiple):
    """(begin, end, own_begin, own_end) of tiles covering ``[0, length)``.

    Tiles start at multiples of ``multiple``; the last one is stretched to end at ``length``. Neighbours split
    their overlap at its middle, so each tile owns the pixels farthest from its borders.
    """
    last = (length - tile_size) // multiple * multiple
    spans = [(s, s + tile_size) for s in range(0, last, stride)] + [(last, length)]
    cuts = [0] + [(spans[i + 1][0] + spans[i][1]) // 2 for i in range(len(spans) - 1)] + [length]
    return [(b, e, cuts[i], cuts[i + 1]) for i, (b, e) in enumerate(spans)]


def tiled_forward(fn, x, tile_size, tile_overlap=32, multiple=2):
    """Apply ``fn`` (N, C, H, W) -> (N, C', H, W) tile by tile and stitch the tiles into one output.

    Tiles are ``tile_size`` squares that overlap by at least ``tile_overlap`` pixels; each output pixel is taken
    from the tile in which it lies farthest from a seam, so a network whose receptive field radius is at most
    ``tile_overlap // 2`` gives exactly its untiled output. Networks with image-global statistics (ScaoedNet's
    attention pools) see per-tile statistics instead and match the untiled output only approximately. Tile
    offsets are multiples of ``multiple`` so pixel-(un)shuffle grids stay aligned. An image no larger than one
    tile is restored in one piece.
    """
    if tile_size % multiple or tile_overlap % multiple:
        raise ValueError(f'tile_size ({tile_size}) and tile_overlap ({tile_overlap}) must be multiples of {multiple}')
    if tile_overlap < 0 or tile_size - tile_overlap < multiple:
        raise ValueError(f'tile_overlap must be in [0, tile_size - {multiple}] so that tiles advance; got '
                         f'tile_size={tile_size}, tile_overlap={tile_overlap}')
    h, w = x.shape[-2:]
    if h <= tile_size and w <= tile_size:
        return fn(x)
    stride = tile_size - tile_overlap
    rows = _tiles(h, min(tile_size, h), stride, multiple)
    cols = _tiles(w, min(tile_size, w), stride, multiple)
    out = None
    for top, bottom, r0, r1 in rows:
        for left, right, c0, c1 in cols:
            tile_out = fn(x[..., top:bottom, left:right])
            if out is None:
                out = tile_out.new_empty(tile_out.shape[:2] + (h, w))
            out[..., r0:r1, c0:c1] = tile_out[..., r0 - top:r1 - top, c0 - left:c1 - left]
    return out


def self_ensemble(fn, x):
    """Mean of ``fn`` over the 8 flips/rotations of ``x`` (each output mapped back), the x8 self-ensemble."""
    total = None
    for rot in range(4):
        for flip in (False, True):
            t = torch.rot90(x, rot, dims=(2, 3))
            t = t.flip(3) if flip else t
            out = fn(t)
            out = out.flip(3) if flip else out
            out = torch.rot90(out, -rot, dims=(2, 3))
            total = out if total is None else total + out
    return total / 8
