"""Library code uses keras, keras.ops and numpy only (STYLE.md principle 7)."""

import ast
import pathlib

import keras_vit

BACKENDS = {"torch", "jax", "jaxlib", "tensorflow", "timm", "transformers"}
# Modules allowed to touch a backend, each with a comment saying why.
QUARANTINED = {
    "backend/torch_checkpoint.py", "backend/host_callback.py", "backend/torch_rng.py", "backend/jax_state.py",
    "backend/tf_distribute.py", "backend/torch_distributed.py", "backend/torch_export.py", "backend/tf_saved_model.py",
    "backend/torch_conv.py",
}


def test_no_backend_imports_in_the_library():
    root = pathlib.Path(keras_vit.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        relative = str(path.relative_to(root))
        if relative in QUARANTINED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{relative}: {n}" for n in names if n.split(".")[0] in BACKENDS]
    assert offenders == []
