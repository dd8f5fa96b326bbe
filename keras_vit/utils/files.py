"""Files a user keeps, written atomically and safely under concurrent processes.

Every file or directory is first written under a name unique to the writing
process (`tempfile` in the same folder), flushed to disk, and only then
renamed to its final name, so a reader never sees a half-written file and two
writers never write into the same file. `file_lock` serialises the writers of
one path across processes (an advisory `flock` on a lock file in
`$KERAS_HOME/keras_vit/locks/`, named by the path's hash, so no lock file sits
beside the user's files; POSIX only, elsewhere the unique staging names still
keep each write whole).
"""

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no inter-process lock
    fcntl = None


def _lock_path(path):
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    directory = os.path.join(keras_home, "keras_vit", "locks")
    os.makedirs(directory, exist_ok=True)
    digest = hashlib.sha1(os.path.realpath(path).encode("utf-8")).hexdigest()[:20]
    return os.path.join(directory, f"{os.path.basename(path)[:40]}-{digest}.lock")


@contextlib.contextmanager
def file_lock(path):
    """Holds an exclusive inter-process lock on `path` (blocking)."""
    with open(_lock_path(path), "a+") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: reading it sets it for a moment


def _plain_permissions(path, directory=False):
    """`tempfile` creates private (0600/0700) entries; a user's files get the
    permissions any other file of theirs would (0666/0777 less the umask)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_UMASK)


def _host():
    import socket

    return "".join(c for c in socket.gethostname() if c.isalnum())[:20] or "host"


def _owner_tag():
    """Staging names carry the writer's host and pid, so that the leftovers of
    a killed writer can be told from the work of a live one."""
    return f"{_host()}-{os.getpid()}"


def _owner_is_dead(name):
    host = _host()
    for part in name.split("."):
        if part.startswith(host + "-"):
            pid = part[len(host) + 1:].split("_")[0]
            if not pid.isdigit():
                return False
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return True
            except OSError:
                return False
            return False
    return False


def remove_leftovers(path):
    """Removes the staging files and directories that killed writers left
    next to `path` (same host, process gone); a live writer's stay."""
    parent = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}."
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix) or not name.endswith((".partial", ".tmp", ".old")):
            continue
        if not _owner_is_dead(name[len(prefix):]):
            continue
        full = os.path.join(parent, name)
        if os.path.isdir(full):
            shutil.rmtree(full, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(full)


def pause_for_tests():
    """Sleeps `$KERAS_VIT_TEST_WRITE_PAUSE` seconds (unset: not at all) while
    a write is staged but not yet in place. The crash tests set it so that a
    kill lands in the middle of a save; nothing else should."""
    seconds = os.environ.get("KERAS_VIT_TEST_WRITE_PAUSE")
    if seconds:
        import time

        time.sleep(float(seconds))


def _fsync_directory(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _check_finite(value, path):
    """Strict JSON: NaN and infinities have no JSON spelling."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(
            f"Refusing to write {value} to {path}: JSON has no NaN or infinity. "
            "Pass finite numbers (or None)."
        )
    if isinstance(value, dict):
        for item in value.values():
            _check_finite(item, path)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_finite(item, path)


def write_json_atomically(path, data):
    """Writes strict JSON (no NaN) to `path` through a unique temporary file."""
    _check_finite(data, path)
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_bytes_atomically(path, text.encode("utf-8"))


def write_bytes_atomically(path, payload):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{_owner_tag()}_", suffix=".tmp", dir=directory)
    try:
        _plain_permissions(staging)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        pause_for_tests()
        os.replace(staging, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(staging)
        raise
    _fsync_directory(directory)
    remove_leftovers(path)


def atomic_file(path):
    """A unique temporary path next to `path`; call `commit_file(tmp, path)` when written."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{_owner_tag()}_", suffix=".tmp", dir=directory)
    os.close(fd)
    _plain_permissions(staging)
    return staging


def commit_file(staging, path):
    with open(staging, "rb") as f:
        os.fsync(f.fileno())
    pause_for_tests()
    os.replace(staging, path)
    _fsync_directory(os.path.dirname(os.path.abspath(path)))
    remove_leftovers(path)


def staging_directory(directory):
    """A fresh, unique directory next to `directory` to write into."""
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.{_owner_tag()}_", suffix=".partial", dir=parent)
    _plain_permissions(staging, directory=True)
    return staging


def replace_directory(staging, directory):
    """Moves a complete `staging` directory to `directory`, replacing any old one.

    The old directory is first renamed aside (a directory cannot be renamed
    over a non-empty one), then removed. Callers hold `file_lock(directory)`
    so that readers who take the lock never see the gap between the renames.
    """
    for name in os.listdir(staging):
        path = os.path.join(staging, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    pause_for_tests()
    old = None
    if os.path.lexists(directory):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.{_owner_tag()}_", suffix=".old", dir=os.path.dirname(os.path.abspath(directory)))
        os.rmdir(old)
        os.replace(directory, old)
    os.replace(staging, directory)
    _fsync_directory(os.path.dirname(os.path.abspath(directory)))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    remove_leftovers(directory)
