import numpy as np
import pytest

from keras_vit.layers import SinePositionEncoding
from layer_checks import check_config_round_trip
from layer_checks import to_np

torch = pytest.importorskip("torch")
detr = pytest.importorskip("transformers.models.detr.modeling_detr")


def _reference(mask, features=16, normalize=True):
    module = detr.DetrSinePositionEmbedding(num_position_features=features, normalize=normalize)
    mask_t = torch.from_numpy(mask.astype("int64"))
    out = module(shape=(mask.shape[0], 3) + mask.shape[1:], device="cpu", dtype=torch.float32, mask=mask_t)
    return out.permute(0, 2, 3, 1).numpy()  # (B, 2F, H, W) -> (B, H, W, 2F)


@pytest.mark.parametrize("normalize", [True, False])
def test_matches_transformers_on_padded_batch(normalize):
    mask = np.ones((2, 5, 7), bool)
    mask[0, 3:, :] = False  # image 0 is 3 x 5, padded to 5 x 7
    mask[0, :, 5:] = False
    out = to_np(SinePositionEncoding(16, normalize=normalize)(mask))
    assert out.shape == (2, 5, 7, 32)
    np.testing.assert_allclose(out, _reference(mask, 16, normalize), atol=1e-5)


def test_padding_does_not_move_the_real_image():
    small = np.ones((1, 3, 4), bool)
    padded = np.zeros((1, 6, 6), bool)
    padded[0, :3, :4] = True
    layer = SinePositionEncoding(8)
    np.testing.assert_allclose(to_np(layer(padded))[0, :3, :4], to_np(layer(small))[0], atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="must be even"):
        SinePositionEncoding(7)
    with pytest.raises(ValueError, match="scale is only used"):
        SinePositionEncoding(8, normalize=False, scale=1.0)


def test_config_round_trip():
    check_config_round_trip(SinePositionEncoding(8), np.ones((1, 3, 4), bool))
