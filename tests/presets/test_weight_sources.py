"""The whole from_preset weights path, on checkpoints written in each upstream format.

The "download" is pointed at a local folder laid out like the Hugging Face hub
(KERAS_VIT_HF_ENDPOINT=file://...), so every step runs (fetch, verify, convert,
cache) without a network.
"""

import json
import os

import pytest

from keras_vit import ViT
from keras_vit.presets import download as download_lib
from npz_fixtures import write_original_npz
from reference_models import images
from reference_models import max_abs_diff
from reference_models import randomize

timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

TOLERANCE = 1e-4


def _state_dict_numpy(model):
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    root = tmp_path / "hub"
    monkeypatch.setenv("KERAS_VIT_HF_ENDPOINT", root.as_uri())
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return root


def _publish(hub, repo, filename, writer):
    path = hub / repo / "resolve" / "main" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    writer(str(path))
    return path


@pytest.mark.parametrize(
    "preset, timm_name",
    [("vit_ti16", "vit_tiny_patch16_224"), ("r_vit_ti16", "vit_tiny_r_s16_p8_224")],
)
def test_preset_name_downloads_converts_and_caches(hub, preset, timm_name):
    from keras_vit.presets import VIT_PRESETS

    reference = randomize(timm.create_model(timm_name, pretrained=False), std=0.02)
    published = _publish(
        hub, VIT_PRESETS[preset]["source"], "model.safetensors",
        lambda p: safetensors_numpy.save_file(_state_dict_numpy(reference), p),
    )
    x, x_torch = images((1, 224, 224, 3))
    with torch.no_grad():
        expected = reference(x_torch)
    model = ViT.from_preset(preset)
    assert max_abs_diff(model(x), expected) <= TOLERANCE
    published.unlink()  # the second call must need no "network"
    again = ViT.from_preset(preset)
    assert max_abs_diff(again(x), expected) <= TOLERANCE


def test_higher_resolution_matches_timm_resampling(hub):
    reference = randomize(timm.create_model("vit_tiny_patch16_224", pretrained=False), std=0.02)
    state_dict = _state_dict_numpy(reference)
    _publish(
        hub, "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k", "model.safetensors",
        lambda p: safetensors_numpy.save_file(state_dict, p),
    )
    big = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=384).eval()
    filtered = timm.models.vision_transformer.checkpoint_filter_fn(
        {k: torch.from_numpy(v) for k, v in state_dict.items()}, big
    )
    big.load_state_dict(filtered)
    x, x_torch = images((1, 384, 384, 3), seed=2)
    with torch.no_grad():
        expected = big(x_torch)
    model = ViT.from_preset("vit_ti16", image_size=384)
    assert max_abs_diff(model(x), expected) <= TOLERANCE


def _tiny_timm():
    return randomize(
        timm.models.vision_transformer.VisionTransformer(
            img_size=30, patch_size=3, embed_dim=32, depth=2, num_heads=4, mlp_ratio=37 / 32, num_classes=5
        )
    )


def test_local_pth_checkpoint(tmp_path):
    reference = _tiny_timm()
    path = str(tmp_path / "vit.pth")
    torch.save({"model": reference.state_dict()}, path)  # DeiT-style nesting
    model = ViT.from_preset(path, num_heads=4)
    x, x_torch = images((2, 30, 30, 3))
    with torch.no_grad():
        expected = reference(x_torch)
    assert max_abs_diff(model(x), expected) <= TOLERANCE


def test_local_transformers_safetensors(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        image_size=30, patch_size=3, num_labels=5,
    )
    reference = randomize(transformers.ViTForImageClassification(config))
    reference.save_pretrained(tmp_path)
    model = ViT.from_preset(str(tmp_path / "model.safetensors"))
    x, x_torch = images((2, 30, 30, 3))
    with torch.no_grad():
        expected = reference(pixel_values=x_torch).logits
    assert max_abs_diff(model(x), expected) <= TOLERANCE


def test_local_original_npz(tmp_path):

    path = str(tmp_path / "ViT-tiny.npz")
    write_original_npz(path)
    reference = timm.models.vision_transformer.VisionTransformer(
        img_size=30, patch_size=3, embed_dim=32, depth=2, num_heads=4, mlp_ratio=37 / 32, num_classes=5
    )
    timm.models.vision_transformer._load_weights(reference, path)
    reference.eval()
    model = ViT.from_preset(path, gelu_approximate=False)  # timm runs them with exact GELU
    x, x_torch = images((2, 30, 30, 3))
    with torch.no_grad():
        expected = reference(x_torch)
    assert max_abs_diff(model(x), expected) <= TOLERANCE
    assert ViT.from_preset(path).backbone.gelu_approximate  # the original code's GELU


def test_hf_scheme_with_timm_repo(hub):
    reference = _tiny_timm()
    repo = "someone/tiny-vit"
    _publish(hub, repo, "model.safetensors", lambda p: safetensors_numpy.save_file(_state_dict_numpy(reference), p))
    _publish(hub, repo, "config.json", lambda p: open(p, "w").write(json.dumps({"architecture": "vit_tiny", "num_classes": 5})))
    model = ViT.from_preset(f"hf://{repo}", num_heads=4)
    x, x_torch = images((2, 30, 30, 3))
    with torch.no_grad():
        expected = reference(x_torch)
    assert max_abs_diff(model(x), expected) <= TOLERANCE


def test_hash_mismatch_keeps_nothing(hub, tmp_path):
    path = _publish(hub, "org/file", "model.safetensors", lambda p: open(p, "wb").write(b"not weights"))
    with pytest.raises(ValueError, match="sha256"):
        download_lib.download(path.as_uri(), filename="x.safetensors", sha256="0" * 64)
    assert os.listdir(download_lib.downloads_dir()) == []
    good = download_lib.download(path.as_uri(), filename="x.safetensors", sha256=download_lib.sha256_of(str(path)))
    assert open(good, "rb").read() == b"not weights"


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "weights.ckpt"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="Unknown preset"):
        ViT.from_preset(str(path))


def test_convert_command_writes_a_preset(tmp_path):
    from keras_vit.cli import main

    reference = _tiny_timm()
    path = str(tmp_path / "vit.pth")
    torch.save(reference.state_dict(), path)
    output = str(tmp_path / "converted")
    assert main(["convert", path, output, "--num-heads", "4"]) == 0
    model = ViT.from_preset(output)
    x, x_torch = images((2, 30, 30, 3))
    with torch.no_grad():
        expected = reference(x_torch)
    assert max_abs_diff(model(x), expected) <= TOLERANCE


def test_interrupted_download_leaves_nothing_behind(tmp_path, monkeypatch):
    """A loopback server that promises 1 MB and hangs up after 1 kB."""
    import http.server
    import threading

    class Truncating(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 20))
            self.end_headers()
            self.wfile.write(b"\0" * 1024)
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args):
            pass

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    server = http.server.HTTPServer(("127.0.0.1", 0), Truncating)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/model.safetensors"
    try:
        with pytest.raises(ConnectionError, match="Could not download"):
            download_lib.download(url, filename="model.safetensors", progress=False)
    finally:
        thread.join(timeout=10)
        server.server_close()
    assert os.listdir(download_lib.downloads_dir()) == []


def test_hf_scheme_with_transformers_repo(hub, tmp_path):
    """A transformers repo (config.json + model.safetensors, 4.x names) via hf://."""
    import shutil

    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        image_size=30, patch_size=3, num_labels=5,
    )
    reference = randomize(transformers.ViTForImageClassification(config))
    saved = tmp_path / "saved"
    reference.save_pretrained(saved)
    for name in ("model.safetensors", "config.json"):
        _publish(hub, "google/vit-tiny-test", name, lambda p, n=name: shutil.copyfile(saved / n, p))
    model = ViT.from_preset("hf://google/vit-tiny-test")
    x, x_torch = images((2, 30, 30, 3))
    with torch.no_grad():
        expected = reference(pixel_values=x_torch).logits
    assert max_abs_diff(model(x), expected) <= TOLERANCE


def test_timm_save_for_hf_config_gives_the_head_count(tmp_path):
    """timm's own export (config.json with `architecture` and `model_args`)
    states what the tensors do not: the head count and the normalisation."""
    reference = randomize(
        timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=30, patch_size=3,
                          embed_dim=40, depth=2, num_heads=2, mlp_ratio=1.5, num_classes=7)
    )
    timm.models.save_for_hf(reference, str(tmp_path / "export"), safe_serialization=True)
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["model_args"]["num_heads"] == 2
    path = str(tmp_path / "export" / "model.safetensors")
    model = ViT.from_preset(path)
    assert model.backbone.num_heads == 2
    x, x_torch = images((2, 30, 30, 3))
    with torch.no_grad():
        expected = reference(x_torch)
    assert max_abs_diff(model(x), expected) <= TOLERANCE
    # The export's normalisation (timm's ImageNet default for this architecture).
    assert model.preprocessor.mean == tuple(config["pretrained_cfg"]["mean"])


def test_timm_file_without_a_config_asks_for_the_head_count(tmp_path):
    reference = _tiny_timm()
    safetensors_numpy.save_file(_state_dict_numpy(reference), str(tmp_path / "vit.safetensors"))
    with pytest.raises(ValueError, match=r"attention heads .* not stored .* Pass num_heads="):
        ViT.from_preset(str(tmp_path / "vit.safetensors"))


@pytest.mark.parametrize(
    "relative, mean",
    [
        # As the offline instructions have users fetch them: the hub repo's
        # folder, the cache's own name, the original DeiT release's .pth name.
        ("deit_small_patch16_224.fb_in1k/model.safetensors", (0.485, 0.456, 0.406)),
        ("timm--deit_tiny_patch16_224.fb_in1k--model.safetensors", (0.485, 0.456, 0.406)),
        ("deit_base_patch16_224-b5f2ef4d.safetensors", (0.485, 0.456, 0.406)),
        ("vit_base_patch16_224.augreg_in21k_ft_in1k/model.safetensors", (0.5, 0.5, 0.5)),
        ("my_weights.safetensors", (0.5, 0.5, 0.5)),
    ],
)
def test_a_release_file_keeps_its_normalisation_without_a_config(tmp_path, relative, mean):
    reference = _tiny_timm()
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors_numpy.save_file(_state_dict_numpy(reference), str(path))
    model = ViT.from_preset(str(path), num_heads=4)
    assert model.preprocessor.mean == mean
    assert model.preprocessor.std == ((0.229, 0.224, 0.225) if mean[0] != 0.5 else (0.5, 0.5, 0.5))


@pytest.mark.parametrize(
    "drop",
    ["blocks.0.", "blocks.1.mlp.fc2.weight", "blocks.0.attn.qkv.bias", "norm.weight", "head.weight", "cls_token"],
)
def test_a_partial_timm_checkpoint_is_refused(tmp_path, drop):
    state_dict = {k: v for k, v in _state_dict_numpy(_tiny_timm()).items() if not k.startswith(drop)}
    safetensors_numpy.save_file(state_dict, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ValueError, match=r"incomplete|no place|has shape"):
        ViT.from_preset(str(tmp_path / "partial.safetensors"), num_heads=4)
