"""The `keras-vit` command.

    keras-vit train [recipe options]   # the main job: a ViT on the bundled digits
    keras-vit detect [recipe options]  # DETR on the generated shapes (or tfds:coco/2017)
    keras-vit depth [recipe options]   # DPT depth on the generated scenes (or tfds:nyu_depth_v2)
    keras-vit segment [recipe options] # DPT segmentation on the generated scenes (or tfds:scene_parse150)
    keras-vit presets                  # list the presets
    keras-vit convert SOURCE OUTPUT_DIR [--num-heads N] [--image-size S] [--num-classes K]
        # SOURCE: a ViT or DETR preset name, a .npz/.safetensors/.pth/.bin file, or hf://org/name
"""

import sys

RECIPES = {
    "train": "recipes.vit_classification",
    "detect": "recipes.detr_detection",
    "depth": "recipes.dpt_depth",
    "segment": "recipes.segmentation",
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "train"
    if command in RECIPES:
        import importlib

        from recipes import tfds_data

        recipe = importlib.import_module(RECIPES[command]).main
        try:
            recipe(argv)
        except (tfds_data.OfflineError, tfds_data.MissingTFDS) as error:
            # Said plainly, without a traceback: what is missing and what to do.
            print(f"keras-vit {command}: {error}", file=sys.stderr)
            return 1
        return 0
    if command == "presets":
        from keras_vit.presets.registry import _FAMILIES
        from keras_vit.presets.registry import list_presets

        for family in sorted(_FAMILIES):
            for name in list_presets(family):
                print(f"{name:18s} {family:16s} {_FAMILIES[family].presets[name]['description']}")
        return 0
    if command == "convert":
        return convert(argv)
    print(__doc__)
    return 0 if command in ("-h", "--help", "help") else 2


def _is_detr(source):
    """A DETR preset name or a DETR checkpoint file (told apart by its tensor names)."""
    import os

    from keras_vit.presets.detr_presets import DETR_PRESETS

    if source in DETR_PRESETS:
        return True
    if not os.path.isfile(source):
        return False
    from keras_vit.conversion.checkpoint import read_checkpoint
    from keras_vit.conversion.detr import detect_detr_format

    try:
        detect_detr_format(read_checkpoint(source))
    except ValueError:
        return False
    return True


def convert(argv):
    """Converts a checkpoint (or fetches a preset) and writes a preset directory."""
    import argparse

    parser = argparse.ArgumentParser(prog="keras-vit convert")
    parser.add_argument("source", help="preset name, checkpoint file or hf://org/name")
    parser.add_argument("output_dir")
    parser.add_argument("--num-heads", type=int, default=None, help="for timm files of non-standard width")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--source-format", default="original", choices=["original", "transformers"],
                        help="for DETR preset names: which release to convert")
    args = parser.parse_args(argv)
    from keras_vit.presets.detr_presets import DETR_PRESETS

    overrides = {} if args.num_heads is None else {"num_heads": args.num_heads}
    if _is_detr(args.source):
        from keras_vit.models.detr import DETR

        source = args.source_format if args.source in DETR_PRESETS else None
        model = DETR.from_preset(args.source, source=source, num_classes=args.num_classes, **overrides)
        model.save_to_preset(args.output_dir, metadata={"converted_from": args.source})
        print(f"wrote {args.output_dir} ({model.count_params():,} parameters)")
        return 0
    from keras_vit.models.vit import ViT

    model = ViT.from_preset(
        args.source, num_classes=args.num_classes, image_size=args.image_size, **overrides
    )
    model.save_to_preset(args.output_dir, metadata={"converted_from": args.source})
    print(f"wrote {args.output_dir} ({model.count_params():,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
