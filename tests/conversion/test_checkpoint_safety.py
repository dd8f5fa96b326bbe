"""A checkpoint that holds code is refused, and the code never runs."""

import os

import pytest

torch = pytest.importorskip("torch")


class _Planted:
    """Pickles as a call of os.system: what a hostile checkpoint holds."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.one_backend("torch", "the reader is the same on every backend (torch.load with weights_only=True)")
def test_a_torch_pickle_with_code_is_refused_without_running_it(tmp_path):
    from keras_vit.conversion.checkpoint import read_checkpoint

    marker = tmp_path / "ran"
    path = tmp_path / "model.pth"
    torch.save({"model": {"weight": torch.zeros(2)}, "extra": _Planted(str(marker))}, path)
    with pytest.raises(ValueError) as error:
        read_checkpoint(str(path))
    message = str(error.value)
    assert "holds pickled Python objects other than tensors" in message and "never loads code" in message
    assert "weights_only=False" not in message  # never suggest turning the check off
    assert not marker.exists()
