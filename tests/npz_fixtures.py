"""An original-format ViT .npz (google-research/vision_transformer key names), random values."""

import numpy as np

D, HEADS, MLP, LAYERS, PATCH, CLASSES = 32, 4, 37, 2, 3, 5


def write_original_npz(path, pre_logits=False, seed=0, hybrid_layers=None, grid=10):
    """Random arrays under the original release's key names and layouts."""
    rng = np.random.default_rng(seed)

    def r(*shape, scale=0.2, offset=0.0):
        return (offset + scale * rng.normal(size=shape)).astype("float32")

    dh = D // HEADS
    patch, channels = PATCH, 3
    if hybrid_layers is not None:
        patch, channels = 1, (256 * 2 ** (len(hybrid_layers) - 1) if hybrid_layers else 64)
    arrays = {
        "embedding/kernel": r(patch, patch, channels, D),
        "embedding/bias": r(D),
        "cls": r(1, 1, D),
        "Transformer/posembed_input/pos_embedding": r(1, 1 + grid * grid, D),
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
    if hybrid_layers is not None:
        arrays["conv_root/kernel"] = r(7, 7, 3, 64)
        arrays["gn_root/scale"], arrays["gn_root/bias"] = r(64, offset=1.0), r(64)
        in_channels = 64
        for stage, depth in enumerate(hybrid_layers):
            out = 256 * 2**stage
            for unit in range(depth):
                p = f"block{stage + 1}/unit{unit + 1}"
                shapes = {1: (1, 1, in_channels, out // 4), 2: (3, 3, out // 4, out // 4), 3: (1, 1, out // 4, out)}
                for i, shape in shapes.items():
                    arrays[f"{p}/conv{i}/kernel"] = r(*shape)
                    arrays[f"{p}/gn{i}/scale"], arrays[f"{p}/gn{i}/bias"] = r(shape[-1], offset=1.0), r(shape[-1])
                if unit == 0:
                    arrays[f"{p}/conv_proj/kernel"] = r(1, 1, in_channels, out)
                    arrays[f"{p}/gn_proj/scale"], arrays[f"{p}/gn_proj/bias"] = r(out, offset=1.0), r(out)
                in_channels = out
    np.savez(path, **arrays)
    return arrays
