"""A tensorflow-datasets set that is not on disk fails within seconds with
the offline instructions, instead of retrying for minutes; a missing
tensorflow-datasets is named with the command that installs it."""

import socket
import subprocess
import sys
import time

import pytest

from recipes import tfds_data

pytest.importorskip("tensorflow_datasets")


def _closed_port():
    # A loopback port nobody listens on: connecting is refused at once, and
    # the test never touches the outside network.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", ["train", "detect"])
def test_unreachable_download_hosts_fail_fast_with_instructions(command, tmp_path, monkeypatch, capsys):
    from keras_vit.cli import main

    monkeypatch.setenv("KERAS_VIT_TFDS_PROBE", f"127.0.0.1:{_closed_port()}")
    dataset = "tfds:mnist" if command == "train" else "tfds:coco/2017"
    start = time.monotonic()
    code = main([command, "--smoke", "--dataset", dataset, "--data-dir", str(tmp_path / "tfds"), "--output", str(tmp_path / "run")])
    seconds = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 1 and seconds < 10, (code, seconds, err)
    assert f"{dataset} is not prepared in {tmp_path / 'tfds'}" in err
    assert "did not answer" in err and "manual_dir" in err and "download=False" in err
    assert str(tmp_path / "tfds" / "downloads" / "manual") in err
    assert "Traceback" not in err


def test_offline_flag_never_probes(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_VIT_TFDS_PROBE", "this-host-must-not-be-asked.invalid:443")
    monkeypatch.setattr(tfds_data, "probe", None)  # calling it would fail the test
    with pytest.raises(tfds_data.OfflineError, match=r"--offline \(download=False\)"):
        tfds_data.load("mnist", ["train", "test"], data_dir=str(tmp_path), download=False)


def test_data_on_disk_is_read_without_the_network(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(tfds_data, "probe", None)
    with tfds.testing.mock_data(num_examples=4):
        (train, test), info = tfds_data.load("mnist", ["train", "test"], data_dir=str(tmp_path))
    assert info.features["label"].num_classes == 10 and len(list(train)) == 4


def test_without_tensorflow_datasets_the_install_command_is_given(tmp_path):
    code = (
        "import sys; sys.modules['tensorflow_datasets'] = None\n"
        "from keras_vit.cli import main\n"
        f"sys.exit(main(['train', '--smoke', '--dataset', 'tfds:mnist', '--output', {str(tmp_path)!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "needs tensorflow-datasets" in result.stderr and "pip install tensorflow-datasets" in result.stderr
    assert "Traceback" not in result.stderr
