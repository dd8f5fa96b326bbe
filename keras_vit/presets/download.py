"""Downloading checkpoints: progress bar, hash check, atomic cache writes, fast failure.

- Files land in `$KERAS_HOME/keras_vit/downloads/` (see `preset_cache_dir`).
- A download is written to a temporary file unique to the process and renamed
  only once complete and verified, so an interrupted download never leaves a
  file a later call trusts; concurrent processes asking for the same file wait
  on one lock, and the first one's file serves them all.
- One attempt with a short connect timeout and no retries: with no network the
  call fails within seconds with a message saying how to load a local file.
- A transfer that stalls (less than `MIN_STALL_BYTES` in any
  `$KERAS_VIT_STALL_SECONDS`, 30 s by default) or outlives
  `$KERAS_VIT_DOWNLOAD_DEADLINE` (3 hours by default) is abandoned.
- `hf://org/name` and Hugging Face repo ids resolve against
  `$KERAS_VIT_HF_ENDPOINT` (default `https://huggingface.co`), so tests and
  mirrors can point the whole path at a local folder (`file:///...`).
"""

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import time
import urllib.request

import keras

from keras_vit.utils.files import atomic_file
from keras_vit.utils.files import commit_file
from keras_vit.utils.files import file_lock

CONNECT_TIMEOUT = 10  # seconds; no retries.
CHUNK = 1 << 16
MIN_STALL_BYTES = 1024


def _seconds(variable, default):
    value = os.environ.get(variable)
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{variable} must be a number of seconds. Received: {variable}={value!r}") from None
    if not seconds > 0:
        raise ValueError(f"{variable} must be positive. Received: {variable}={value!r}")
    return seconds


def downloads_dir():
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(keras_home, "keras_vit", "downloads")


def hf_endpoint():
    return os.environ.get("KERAS_VIT_HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hf_file_url(repo_id, filename, revision="main"):
    """URL of one file of a Hugging Face hub repository."""
    return f"{hf_endpoint()}/{repo_id}/resolve/{revision}/{filename}"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def name_hash_prefix(filename):
    """The sha256 prefix a release file name carries as its last `-` part
    (`dpt_large-midas-2f21e586.pt` -> `2f21e586`), as torch.hub names files."""
    return os.path.basename(filename).rsplit("-", 1)[1].split(".")[0]


def download(url, filename=None, sha256=None, progress=True):
    """Downloads `url` into the cache once and returns the local path.

    Args:
        url: `https://`, `http://` or `file://` URL.
        filename: cache file name; derived from the URL by default.
        sha256: expected hex digest (or its first characters, as torch.hub
            file names carry), checked before the file is kept.
        progress: show a progress bar.

    Raises:
        ConnectionError: the file cannot be fetched; the message says how to
            use a local copy instead.
        ValueError: the hash does not match (the partial file is deleted).
    """
    if filename is None:
        parts = urllib.parse.urlparse(url).path.strip("/").split("/")
        filename = "--".join(p for p in parts if p not in ("resolve", "main"))
    os.makedirs(downloads_dir(), exist_ok=True)
    target = os.path.join(downloads_dir(), filename)
    with file_lock(target):
        if os.path.isfile(target):
            return target
        partial = atomic_file(target)
        try:
            _transfer(url, partial, target, progress)
            if sha256 is not None:
                actual = sha256_of(partial)
                # A short value is a prefix, as in torch.hub file names (detr-r50-e632da11.pth).
                if not actual.startswith(sha256.lower()):
                    raise ValueError(
                        f"The file downloaded from {url} has sha256 {actual}, expected {sha256}. "
                        "It was deleted; retry, or check the source."
                    )
            commit_file(partial, target)  # atomic: only complete, verified files get the final name
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    return target


def _transfer(url, partial, target, progress):
    stall_seconds = _seconds("KERAS_VIT_STALL_SECONDS", 30.0)
    deadline = time.monotonic() + _seconds("KERAS_VIT_DOWNLOAD_DEADLINE", 3 * 3600.0)
    try:
        with urllib.request.urlopen(url, timeout=min(CONNECT_TIMEOUT, stall_seconds)) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = keras.utils.Progbar(total, unit_name="byte") if progress and total else None
            done = 0
            window_start, window_bytes = time.monotonic(), 0
            with open(partial, "wb") as f:
                while True:
                    chunk = response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    done += len(chunk)
                    window_bytes += len(chunk)
                    now = time.monotonic()
                    if now > deadline:
                        raise TimeoutError(f"the download outlived KERAS_VIT_DOWNLOAD_DEADLINE after {done} bytes")
                    if now - window_start >= stall_seconds:
                        if window_bytes < MIN_STALL_BYTES:
                            raise TimeoutError(
                                f"the transfer stalled: {window_bytes} bytes in the last {now - window_start:.0f} s "
                                "(KERAS_VIT_STALL_SECONDS)"
                            )
                        window_start, window_bytes = now, 0
                    if bar is not None:
                        bar.update(done)
            if total is not None and done != total:
                # read(n) returns short data, not an error, when the peer hangs up.
                raise ConnectionError(f"connection closed after {done} of {total} bytes")
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as error:
        raise ConnectionError(
            f"Could not download {url} ({error}). If this machine has no network, "
            "download the file elsewhere and pass its local path to from_preset "
            "(a .npz, .safetensors, .pth or .bin checkpoint, or a preset "
            "directory; keep the release's file or folder name, e.g. "
            "deit_small_patch16_224.fb_in1k/model.safetensors, or its config.json "
            f"beside it, so that its normalisation is known), or copy it to {target}."
        ) from error
