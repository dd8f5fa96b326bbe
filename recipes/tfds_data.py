"""tensorflow-datasets for the recipes, failing fast and clearly when offline.

`tfds.load(..., download=True)` on a machine without network retries for more
than three minutes and ends in a chained `requests` traceback; without
tensorflow-datasets installed, `import` fails with a bare
`ModuleNotFoundError`. Here data already on disk is read without touching the
network, and otherwise the download hosts are probed first (a few seconds at
most): when none answers, the error says where to put the files.
"""

import os
import socket
import threading

# tfds' own mirror (most datasets' files are on Google Cloud Storage).
PROBE_HOSTS = ("storage.googleapis.com:443",)
PROBE_SECONDS = 4.0


class OfflineError(RuntimeError):
    """A tensorflow-datasets set is not on disk and cannot be downloaded."""


class MissingTFDS(ModuleNotFoundError):
    """tensorflow-datasets is not installed."""


def import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise MissingTFDS(
            f"--dataset tfds:NAME needs tensorflow-datasets, which is not installed ({error}). "
            "Install it with: pip install tensorflow-datasets importlib_resources "
            "(or pip install -e '.[tensorflow]'), or use the bundled default dataset."
        ) from None
    return tfds


def _reachable(host_port, results):
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_SECONDS):
            results[host_port] = None
    except OSError as error:
        results[host_port] = error


def probe(hosts=None):
    """`{host: None if it answered, else the error}`, within PROBE_SECONDS (DNS included)."""
    hosts = list(hosts or os.environ.get("KERAS_VIT_TFDS_PROBE", ",".join(PROBE_HOSTS)).split(","))
    results = {}
    threads = [threading.Thread(target=_reachable, args=(h, results), daemon=True) for h in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROBE_SECONDS + 0.5)
    return {h: results.get(h, TimeoutError(f"no answer in {PROBE_SECONDS} s")) for h in hosts}


def offline_message(name, builder, reason):
    data_dir = str(builder.data_dir)
    suffix = "/" + builder.info.full_name  # e.g. coco/2017/1.1.0
    if data_dir.endswith(suffix):
        data_dir = data_dir[: -len(suffix)]
    manual_dir = os.path.join(data_dir, "downloads", "manual")
    return (
        f"tfds:{name} is not prepared in {data_dir}, and it cannot be downloaded: {reason}.\n"
        "To use it without network here:\n"
        f"  1. on a machine with network: python -c \"import tensorflow_datasets as tfds; tfds.load('{name}')\"\n"
        f"  2. copy its ~/tensorflow_datasets/{builder.name}/ folder to {os.path.join(data_dir, builder.name)}/ "
        "(or point TFDS_DATA_DIR or --data-dir at a copy);\n"
        f"  for datasets whose files you download by hand, put them in {manual_dir} (tfds' manual_dir) "
        "and the recipe prepares them from there.\n"
        "Data that is already prepared is read with download=False, without touching the network."
    )


def load(name, split, data_dir=None, download=True, **kwargs):
    """`tfds.load(name, split=split, with_info=True, **kwargs)` that never hangs offline.

    Returns `(datasets, info)`. Raises `OfflineError` (within a few seconds)
    when the data is not on disk and the download hosts do not answer, or
    when `download=False`.
    """
    tfds = import_tfds()
    try:
        return tfds.load(name, split=split, with_info=True, download=False, data_dir=data_dir, **kwargs)
    except AssertionError:  # "could not find data in ...": not prepared
        pass
    builder = tfds.builder(name, data_dir=data_dir)
    if not download:
        raise OfflineError(offline_message(name, builder, "the recipe was run with --offline (download=False)"))
    answers = probe()
    if all(error is not None for error in answers.values()):
        reason = "; ".join(f"{host} did not answer ({error})" for host, error in answers.items())
        raise OfflineError(offline_message(name, builder, reason))
    return tfds.load(name, split=split, with_info=True, download=True, data_dir=data_dir, **kwargs)
