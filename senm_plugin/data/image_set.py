"""A folder or a BasicSR LMDB of images, read by index (what ``basicsr generate`` and ``basicsr evaluate`` take as
input), and real pairs matched by name."""
from os import path as osp

from senm_plugin.data.image_io import ImageError, decode_bgr8, image_hw, list_images, read_bgr8
from senm_plugin.data.lmdb_io import is_lmdb, key_clash, read_meta_info, safe_key


class ImageSet:
    """The images of a folder or a BasicSR LMDB, by index: ``names``, output ``keys``, ``shapes`` (h, w), ``read``.

    Folders are listed in sorted order (names are file stems); an LMDB keeps its ``meta_info.txt`` order. Keys are
    the names made LMDB-safe (letters, digits, ``_``, ``-``).
    """

    def __init__(self, path, option='--input'):
        if not path:
            raise ImageError(f'{option}: no folder or LMDB given')
        if not osp.exists(path):
            raise ImageError(f'{option}: {path} does not exist')
        self.path, self.option = path, option
        self._env = None
        try:
            if is_lmdb(path):
                entries = read_meta_info(path, option)
                self.files = None
                self.names = [k for k, _ in entries]
                self.shapes = [shape[:2] for _, shape in entries]
            else:
                self.files = [osp.join(path, n) for n in list_images(path, option)]
                self.names = [osp.splitext(osp.basename(f))[0] for f in self.files]
                self.shapes = [image_hw(f) for f in self.files]
        except (ValueError, FileNotFoundError) as err:
            raise ImageError(str(err)) from err
        self.keys = [safe_key(n) for n in self.names]
        clash = key_clash(self.names, [osp.basename(f) for f in self.files] if self.files else None)
        if clash:
            raise ImageError(f'{option}: {clash[0]} and {clash[1]} in {path} give the same LMDB key {clash[2]!r} '
                             '(the extension is dropped, characters other than [A-Za-z0-9_-] become _); '
                             'rename one')

    def __len__(self):
        return len(self.names)

    def read(self, i):
        """Image ``i`` as uint8 BGR (H, W, 3) (BasicSR's decoding: grey -> 3 channels, 16-bit -> 8-bit)."""
        if self.files is not None:
            return read_bgr8(self.files[i])
        if self._env is None:
            import lmdb
            self._env = lmdb.open(self.path, readonly=True, lock=False, readahead=False)
        with self._env.begin(write=False) as txn:
            content = txn.get(self.names[i].encode('ascii'))
        return decode_bgr8(content, f'{self.path}:{self.names[i]}')

    def where(self, i):
        """The file or LMDB key of image ``i``, for messages."""
        return self.files[i] if self.files is not None else f'{self.path}:{self.names[i]}'

    def close(self):
        if self._env is not None:
            self._env.close()
            self._env = None


def shape_batches(shapes, indices, batch_size):
    """Batches of at most ``batch_size`` indices sharing one (h, w), in index order within each size."""
    groups = {}
    for i in indices:
        groups.setdefault(tuple(shapes[i]), []).append(i)
    batches = []
    for group in groups.values():
        batches += [group[s:s + batch_size] for s in range(0, len(group), batch_size)]
    return sorted(batches, key=lambda b: b[0])


def read_pairs(clean_path, noisy_path, option):
    """The real pairs of two image sets (folders or LMDBs) matched by name, as two lists of uint8 BGR images;
    errors name ``option``."""
    clean_set, noisy_set = ImageSet(clean_path, option), ImageSet(noisy_path, option)
    noisy_index = {k: i for i, k in enumerate(noisy_set.keys)}
    common = [(i, noisy_index[k]) for i, k in enumerate(clean_set.keys) if k in noisy_index]
    if not common:
        raise ImageError(f'{option}: no image of {clean_path} has a namesake in {noisy_path}')
    clean = [clean_set.read(i) for i, _ in common]
    noisy = [noisy_set.read(j) for _, j in common]
    for (i, _), x, y in zip(common, clean, noisy):
        if x.shape != y.shape:
            raise ImageError(f'{option}: {clean_set.where(i)} is {x.shape[:2]} but its noisy image {y.shape[:2]}')
    clean_set.close()
    noisy_set.close()
    return clean, noisy
