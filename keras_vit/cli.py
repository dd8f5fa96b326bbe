"""The `keras-vit` command.

    keras-vit train [recipe options]   # the main job: a ViT on the bundled digits
    keras-vit presets                  # list the presets
"""

import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "train"
    if command == "train":
        from recipes.vit_classification import main as train

        train(argv)
        return 0
    if command == "presets":
        from keras_vit.presets import VIT_PRESETS

        for name, entry in sorted(VIT_PRESETS.items()):
            print(f"{name:10s} {entry['variant']:6s} {entry['description']}")
        return 0
    print(__doc__)
    return 0 if command in ("-h", "--help", "help") else 2


if __name__ == "__main__":
    sys.exit(main())
