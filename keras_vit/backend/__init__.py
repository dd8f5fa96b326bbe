"""Backend-specific code, quarantined here (STYLE.md principle 7).

Everything else in keras_vit uses keras, keras.ops and numpy only; a test
keeps framework imports out of the rest of the package.
"""
