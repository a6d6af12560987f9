"""BasicSR-format LMDBs: reading ``meta_info.txt`` and writing an LMDB so that an unfinished one is never kept.

An LMDB is built in ``<out>/_partial_<name>.lmdb`` with BasicSR's ``LmdbMaker``; when every entry is in, a done
marker (``prepare_done.json``: entry count and a fingerprint of the settings) is written into it and the folder is
renamed to ``<out>/<name>.lmdb``. A finished LMDB is kept on a re-run only if its marker, ``meta_info.txt`` and the
LMDB itself agree on the entry count and the fingerprint matches; anything else is rebuilt.
"""
import json
import os
import re
import shutil
from os import path as osp

DONE_MARKER = 'prepare_done.json'
META_INFO = 'meta_info.txt'
_ENVS = {}


def shared_env(path, readonly=True, lock=False, readahead=False, **kwargs):
    """One read-only environment per LMDB path and process (py-lmdb >= 1.5 refuses to open one twice)."""
    import lmdb
    key = (os.getpid(), osp.realpath(path), readonly, lock, readahead, tuple(sorted(kwargs.items())))
    if key not in _ENVS:
        _ENVS[key] = lmdb.open(str(path), readonly=readonly, lock=lock, readahead=readahead, **kwargs)
    return _ENVS[key]


def close_shared_envs():
    """Close this process's shared environments (before the same process rewrites one of those LMDBs)."""
    for env in _ENVS.values():
        env.close()
    _ENVS.clear()


def verify_lmdb(path, entries, key='dataroot', decode='ends'):
    """Check that every entry of ``meta_info.txt`` (``read_meta_info``) is in the LMDB and that values decode to
    the listed size: the first and last (``decode='ends'``, cheap enough for every dataset built) or all of them
    (``'all'``, ``basicsr prepare --verify``). Raises ValueError naming the option, the LMDB and the key."""
    import cv2
    import numpy as np
    if not osp.isfile(osp.join(path, 'data.mdb')):
        raise FileNotFoundError(f'{key}: {path} has a {META_INFO} but no data.mdb (not a finished LMDB)')
    with shared_env(path).begin() as txn:
        cursor = txn.cursor()
        missing = [k for k, _ in entries if not cursor.set_key(k.encode())]
        if missing:
            raise ValueError(f'{key}: {len(missing)} of the {len(entries)} keys that {path}/{META_INFO} lists are not '
                             f'in the LMDB, e.g. {missing[:3]}; rebuild it with basicsr prepare')
        for k, shape in (entries if decode == 'all' else [entries[0], entries[-1]]):
            img = cv2.imdecode(np.frombuffer(txn.get(k.encode()), np.uint8), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise ValueError(f'{key}: {path}, key {k}: the value does not decode as an image (corrupt LMDB)')
            if tuple(img.shape[:2]) != tuple(shape[:2]):
                raise ValueError(f'{key}: {path}, key {k}: the image is {img.shape[:2]} but {META_INFO} says '
                                 f'{tuple(shape[:2])}')


def safe_key(text):
    """An LMDB key made from a file stem: ASCII letters, digits, ``_`` and ``-`` only (BasicSR splits on dots)."""
    return re.sub(r'[^A-Za-z0-9_-]', '_', text)


def key_clash(stems, labels=None):
    """The first two of ``stems`` that give one LMDB key, as ``(first label, second label, key)`` (labels default
    to the stems, e.g. the files they came from); None when all keys differ."""
    seen = {}
    for n, label in zip(stems, labels or stems):
        k = safe_key(n)
        if k in seen:
            return seen[k], label, k
        seen[k] = label
    return None


def is_lmdb(path):
    """True when ``path`` is an LMDB folder (holds ``data.mdb``)."""
    return osp.isdir(path) and osp.isfile(osp.join(path, 'data.mdb'))


def read_meta_info(lmdb_path, key='dataroot'):
    """Keys and (h, w, c) shapes listed in an LMDB's meta_info.txt; a missing/empty LMDB raises naming ``key``."""
    if not lmdb_path:
        raise ValueError(f'{key}: no LMDB path given')
    meta = osp.join(lmdb_path, META_INFO)
    if not osp.isdir(lmdb_path):
        raise FileNotFoundError(f'{key}: LMDB {lmdb_path} does not exist')
    if not osp.isfile(meta):
        raise FileNotFoundError(f'{key}: {meta} is missing (not a BasicSR LMDB, or an unfinished one)')
    entries = []
    with open(meta) as f:
        for num, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(' ')
            try:
                h, w, c = (int(v) for v in parts[1].strip('()').split(','))
            except (IndexError, ValueError):
                raise ValueError(f'{meta}, line {num}: expected "name.png (h,w,c) level", got "{line}"') from None
            entries.append((osp.splitext(parts[0])[0], (h, w, c)))
    if not entries:
        raise ValueError(f'{key}: LMDB {lmdb_path} is empty ({META_INFO} lists no image)')
    return entries


def lmdb_entry_count(lmdb_path):
    """Number of records in an LMDB (opened read-only, without locking)."""
    import lmdb
    env = lmdb.open(lmdb_path, readonly=True, lock=False, readahead=False)
    try:
        return env.stat()['entries']
    finally:
        env.close()


def finished_status(lmdb_path, fingerprint):
    """``'done'`` if ``lmdb_path`` is a verified finished LMDB for ``fingerprint``, ``'other'`` if finished with other
    settings, ``None`` if absent or unfinished (then it must be rebuilt)."""
    marker = osp.join(lmdb_path, DONE_MARKER)
    if not osp.isfile(marker):
        return None
    try:
        with open(marker) as f:
            done = json.load(f)
        with open(osp.join(lmdb_path, META_INFO)) as f:
            meta_lines = sum(1 for line in f if line.strip())
        if not done['entries'] == meta_lines == lmdb_entry_count(lmdb_path):
            return None
    except Exception:  # noqa: BLE001 any damage means "rebuild"
        return None
    return 'done' if done.get('fingerprint') == fingerprint else 'other'


def remove_path(path):
    """Delete a file or folder if present."""
    if osp.isdir(path) and not osp.islink(path):
        shutil.rmtree(path)
    elif osp.lexists(path):
        os.remove(path)


class LmdbBuild:
    """One LMDB under construction: ``put`` entries, then ``finish`` (marker + rename) or ``abort`` (delete)."""

    def __init__(self, out_dir, name, fingerprint, compress_level=1, map_size=1024**4):
        from basicsr.utils.lmdb_util import LmdbMaker
        self.name, self.fingerprint = name, fingerprint
        self.final_path = osp.join(out_dir, f'{name}.lmdb')
        self.tmp_path = osp.join(out_dir, f'_partial_{name}.lmdb')
        remove_path(self.tmp_path)  # left by an interrupted run
        self.maker = LmdbMaker(self.tmp_path, map_size=map_size, compress_level=compress_level)
        self.count = 0

    def put(self, key, img_bytes, shape):
        """Add one PNG-encoded image under ``key`` (ASCII, no dot)."""
        self.maker.put(img_bytes, key, shape)
        self.count += 1

    def finish(self):
        """Commit, verify the entry count, write the done marker last and move the LMDB to its final name."""
        self.maker.close()
        stored = lmdb_entry_count(self.tmp_path)
        if stored != self.count:
            raise RuntimeError(f'{self.tmp_path}: wrote {self.count} entries but the LMDB holds {stored}')
        with open(osp.join(self.tmp_path, DONE_MARKER), 'w') as f:
            json.dump({'entries': self.count, 'fingerprint': self.fingerprint}, f)
        remove_path(self.final_path)
        os.replace(self.tmp_path, self.final_path)
        return self.final_path

    def abort(self):
        """Close and delete the partial LMDB."""
        try:
            self.maker.close()
        except Exception:  # noqa: BLE001 already closed or broken; it is deleted anyway
            pass
        remove_path(self.tmp_path)
