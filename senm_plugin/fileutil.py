"""File helpers every tool shares: atomic writes (bytes, JSON, PNG), output-folder checks and content hashes."""
import hashlib
import json
import os
import tempfile


def atomic_write(path, write, sync=False):
    """Call ``write(f)`` on a temporary binary file beside ``path``, then rename it over ``path``.

    A reader never sees half a file, and a process killed meanwhile leaves at most a ``.<name>.*.tmp`` file. The
    file gets the mode ``open()`` would give it (umask applied); ``sync`` also flushes it to disk first.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def write_json_atomic(path, obj):
    """Write the mapping ``obj`` as JSON, one top-level key per line (readable, and compact for 96,000 crops)."""
    text = '{\n' + ',\n'.join(f'{json.dumps(k)}: {json.dumps(v)}' for k, v in obj.items()) + '\n}\n'
    atomic_write(path, lambda f: f.write(text.encode()))


def write_png_atomic(path, img, compress_level=1):
    """Write a uint8 BGR image as PNG at ``compress_level`` (0-9)."""
    import cv2
    ok, buf = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, int(compress_level)])
    if not ok:
        raise OSError(f'cannot encode {path} as PNG')
    atomic_write(path, lambda f: f.write(buf.tobytes()))


def remove_stale_temps(folder, prefix=''):
    """Delete the ``.tmp`` files that killed atomic writes left in ``folder`` (those starting with ``prefix``)."""
    for name in os.listdir(folder):
        if name.startswith(prefix) and name.endswith('.tmp'):
            os.remove(os.path.join(folder, name))


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


def file_sha256(path):
    """SHA-256 of a file's bytes (identifies checkpoints in a manifest)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def record_fingerprint(record):
    """A short hash of a JSON-able record (the settings and inputs that define an output)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
