"""Small helpers on input files shared by ``basicsr prepare`` and ``basicsr generate``."""
import hashlib
import os


def check_writable_dir(path, option):
    """Return an error message if ``path`` cannot be (or become) a folder this process writes into, else None; checked
    before any work, so a long run does not end in a permission error."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f'{option} {path} is a file, not a folder'
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(os.path.abspath(parent))
    if not os.access(parent, os.W_OK | os.X_OK):
        return f'{option} {path}: no permission to write in {parent}'
    return None


def content_stamp(paths):
    """A short hash of each file's name, size and modification time: it changes when an input image is replaced or
    edited (cheap: no file is read), so a re-run does not keep outputs made from the old content."""
    digest = hashlib.sha256()
    for path in paths:
        st = os.stat(path)
        digest.update(f'{os.path.basename(path)}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
    return digest.hexdigest()[:16]
