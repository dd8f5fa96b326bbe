"""Downloading checkpoints: progress bar, hash check, atomic cache writes, fast failure.

- Files land in `$KERAS_HOME/keras_vit/downloads/` (see `preset_cache_dir`).
- A download is written to `NAME.part` and renamed only once complete and
  verified, so an interrupted download never leaves a file a later call trusts.
- One attempt with a short connect timeout and no retries: with no network the
  call fails within seconds with a message saying how to load a local file.
- `hf://org/name` and Hugging Face repo ids resolve against
  `$KERAS_VIT_HF_ENDPOINT` (default `https://huggingface.co`), so tests and
  mirrors can point the whole path at a local folder (`file:///...`).
"""

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request

import keras

CONNECT_TIMEOUT = 10  # seconds; no retries.
CHUNK = 1 << 20


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
    if os.path.isfile(target):
        return target
    partial = target + ".part"
    try:
        with urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = keras.utils.Progbar(total, unit_name="byte") if progress and total else None
            done = 0
            with open(partial, "wb") as f:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    f.write(chunk)
                    done += len(chunk)
                    if bar is not None:
                        bar.update(done)
            if total is not None and done != total:
                # read(n) returns short data, not an error, when the peer hangs up.
                raise ConnectionError(f"connection closed after {done} of {total} bytes")
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as error:
        if os.path.exists(partial):
            os.remove(partial)
        raise ConnectionError(
            f"Could not download {url} ({error}). If this machine has no network, "
            "download the file elsewhere and pass its local path to from_preset "
            "(a .npz, .safetensors, .pth or .bin checkpoint, or a preset "
            f"directory), or copy it to {target}."
        ) from error
    if sha256 is not None:
        actual = sha256_of(partial)
        # A short value is a prefix, as in torch.hub file names (detr-r50-e632da11.pth).
        if not actual.startswith(sha256.lower()):
            os.remove(partial)
            raise ValueError(
                f"The file downloaded from {url} has sha256 {actual}, expected {sha256}. "
                "It was deleted; retry, or check the source."
            )
    os.replace(partial, target)  # atomic: only complete, verified files get the final name
    return target
