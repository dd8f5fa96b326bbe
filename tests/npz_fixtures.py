"""An original-format ViT .npz (google-research/vision_transformer key names), random values."""

import numpy as np

D, HEADS, MLP, LAYERS, PATCH, CLASSES = 32, 4, 37, 2, 3, 5


def write_original_npz(path, pre_logits=False, seed=0):
    """Random arrays under the original release's key names and layouts."""
    rng = np.random.default_rng(seed)

    def r(*shape, scale=0.2, offset=0.0):
        return (offset + scale * rng.normal(size=shape)).astype("float32")

    dh = D // HEADS
    arrays = {
        "embedding/kernel": r(PATCH, PATCH, 3, D),
        "embedding/bias": r(D),
        "cls": r(1, 1, D),
        "Transformer/posembed_input/pos_embedding": r(1, 101, D),
        "Transformer/encoder_norm/scale": r(D, offset=1.0),
        "Transformer/encoder_norm/bias": r(D),
        "head/kernel": r(D, CLASSES),
        "head/bias": r(CLASSES),
    }
    if pre_logits:
        arrays["pre_logits/kernel"] = r(D, D)
        arrays["pre_logits/bias"] = r(D)
    for i in range(LAYERS):
        b = f"Transformer/encoderblock_{i}"
        a = f"{b}/MultiHeadDotProductAttention_1"
        arrays.update({
            f"{b}/LayerNorm_0/scale": r(D, offset=1.0), f"{b}/LayerNorm_0/bias": r(D),
            f"{b}/LayerNorm_2/scale": r(D, offset=1.0), f"{b}/LayerNorm_2/bias": r(D),
            f"{b}/MlpBlock_3/Dense_0/kernel": r(D, MLP), f"{b}/MlpBlock_3/Dense_0/bias": r(MLP),
            f"{b}/MlpBlock_3/Dense_1/kernel": r(MLP, D), f"{b}/MlpBlock_3/Dense_1/bias": r(D),
            f"{a}/out/kernel": r(HEADS, dh, D), f"{a}/out/bias": r(D),
        })
        for name in ("query", "key", "value"):
            arrays[f"{a}/{name}/kernel"] = r(D, HEADS, dh)
            arrays[f"{a}/{name}/bias"] = r(HEADS, dh)
    np.savez(path, **arrays)
    return arrays
