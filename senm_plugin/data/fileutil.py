"""Small helpers on input files shared by ``basicsr prepare`` and ``basicsr generate``."""
import hashlib
import os


def content_stamp(paths):
    """A short hash of each file's name, size and modification time: it changes when an input image is replaced or
    edited (cheap: no file is read), so a re-run does not keep outputs made from the old content."""
    digest = hashlib.sha256()
    for path in paths:
        st = os.stat(path)
        digest.update(f'{os.path.basename(path)}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
    return digest.hexdigest()[:16]
