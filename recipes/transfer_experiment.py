"""Does fine-tuning transfer? Every method of keras_vit.tuning on a few-label task, against training from scratch.

Needs no download: a small ViT is pre-trained on the bundled handwritten
digits 0-4 (the source task), then adapted to digits 5-9 with only
`--labels-per-class` labelled images per class (the target task), once per
fine-tuning method, and the same architecture is trained from scratch on the
same images. Each is repeated for `--seeds` different label subsets. It
writes `results.json`, `transfer.md` (the table) and `transfer.png` (target
accuracy against the trainable fraction of the parameters, the form of the
VPT paper's Figure 1) under `--output`.

    python -m recipes.transfer_experiment                  # about 10 minutes on 2 cores
    python -m recipes.transfer_experiment --smoke          # a few steps, for CI
"""

import copy
import json
import os

import numpy as np

# (label, `keras-vit finetune` options); "scratch" trains the architecture from fresh weights.
METHODS = [
    ("scratch", {"method": "full", "from_scratch": True}),
    ("full", {"method": "full"}),
    ("partial-1", {"method": "partial", "k": 1}),
    ("linear", {"method": "linear"}),
    ("bias", {"method": "bias"}),
    ("adapter (r=8)", {"method": "adapter", "reduction": 8}),
    ("lora (rank 4)", {"method": "lora", "rank": 4}),
    ("vpt-shallow (10)", {"method": "vpt", "prompts": 10}),
    ("vpt-deep (10)", {"method": "vpt", "prompts": 10, "deep": True}),
]
# The methods that train few weights take a larger learning rate (as the VPT
# paper's sweeps find); the same for every seed.
LEARNING_RATES = {"scratch": 1e-3, "full": 1e-3, "partial-1": 1e-3}
HEAD_LEARNING_RATE = 1e-2


def run(output_dir, labels_per_class=10, seeds=3, source_epochs=30, target_epochs=40, smoke=False, verbose=0,
        methods=None):
    """Runs the experiment (`methods`: labels of `METHODS` to run, default
    all) and writes its files; returns the results."""
    from recipes import finetune
    from recipes import vit_classification

    source_dir = os.path.join(output_dir, "source")
    source_config = dict(vit_classification.CONFIG, dataset="digits:0-4", epochs=source_epochs)
    if smoke:
        source_config.update(vit_classification.SMOKE)
    source = vit_classification.run(source_config, source_dir, verbose=verbose)
    preset = os.path.join(source_dir, "preset")
    chosen = [(label, options) for label, options in METHODS if methods is None or label in methods]
    rows = []
    for label, options in chosen:
        for seed in range(seeds):
            config = dict(
                copy.deepcopy(finetune.CONFIG), preset=preset, dataset="digits:5-9", labels_per_class=labels_per_class,
                epochs=target_epochs, batch_size=10, seed=seed, warmup_epochs=2,
                learning_rate=LEARNING_RATES.get(label, HEAD_LEARNING_RATE), **options,
            )
            if smoke:
                config.update(finetune.SMOKE)
            slug = label.split(" ")[0]
            result = finetune.run(config, os.path.join(output_dir, f"{slug}_seed{seed}"), verbose=verbose)
            rows.append({"method": label, "seed": seed, **{k: result[k] for k in (
                "test_accuracy", "trainable_parameters", "total_parameters", "trainable_fraction", "train_seconds")}})
            print(f"{label:18s} seed {seed}: target accuracy {result['test_accuracy']:.3f} "
                  f"({100 * result['trainable_fraction']:.2f}% of the parameters trained)", flush=True)
    summary = summarise(rows, [label for label, _ in chosen])
    results = {
        "source_accuracy": source["test_accuracy"], "labels_per_class": labels_per_class, "seeds": seeds,
        "source_epochs": source_epochs, "target_epochs": target_epochs, "runs": rows, "summary": summary,
    }
    from keras_vit.utils.files import write_bytes_atomically
    from keras_vit.utils.files import write_json_atomically

    write_json_atomically(os.path.join(output_dir, "results.json"), results)
    write_bytes_atomically(os.path.join(output_dir, "transfer.md"), table(results).encode())
    plot(summary, os.path.join(output_dir, "transfer.png"), labels_per_class)
    return results


def summarise(rows, labels):
    """Mean and standard deviation of the target accuracy per method."""
    summary = []
    for label in labels:
        mine = [r for r in rows if r["method"] == label]
        accuracy = np.array([r["test_accuracy"] for r in mine])
        summary.append({
            "method": label, "accuracy_mean": float(accuracy.mean()), "accuracy_std": float(accuracy.std()),
            "trainable_parameters": mine[0]["trainable_parameters"], "total_parameters": mine[0]["total_parameters"],
            "trainable_fraction": mine[0]["trainable_fraction"],
        })
    return summary


def table(results):
    lines = [
        f"| method | trainable parameters | trainable fraction | target accuracy (mean ± std of {results['seeds']}) |",
        "|---|---|---|---|",
    ]
    for row in results["summary"]:
        lines.append(
            f"| {row['method']} | {row['trainable_parameters']:,} | {100 * row['trainable_fraction']:.2f}% | "
            f"{100 * row['accuracy_mean']:.1f} ± {100 * row['accuracy_std']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def plot(summary, path, labels_per_class):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from keras_vit.visualization.figures import save_figure

    figure, axis = plt.subplots(figsize=(6.5, 4))
    for row in summary:
        scratch = row["method"] == "scratch"
        axis.errorbar(
            100 * row["trainable_fraction"], 100 * row["accuracy_mean"], yerr=100 * row["accuracy_std"],
            fmt="s" if scratch else "o", color="tab:gray" if scratch else "tab:blue", capsize=3,
        )
        axis.annotate(row["method"], (100 * row["trainable_fraction"], 100 * row["accuracy_mean"]),
                      textcoords="offset points", xytext=(5, 4), fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("trainable parameters (% of the model, log scale)")
    axis.set_ylabel("target accuracy (%)")
    axis.set_title(f"digits 0-4 -> digits 5-9, {labels_per_class} labels per class")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return save_figure(figure, path, dpi=120)


def main(argv=None):
    from keras_vit.cli import command_parser

    parser = command_parser("python -m recipes.transfer_experiment", __doc__.split("\n\n")[0])
    parser.add_argument("--output", default="runs/transfer")
    parser.add_argument("--labels-per-class", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--source-epochs", type=int, default=30)
    parser.add_argument("--target-epochs", type=int, default=40)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    for name in ("labels_per_class", "seeds", "source_epochs", "target_epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive int, not {getattr(args, name)}")
    results = run(args.output, args.labels_per_class, args.seeds, args.source_epochs, args.target_epochs, args.smoke)
    print(table(results))
    print(json.dumps({"source_accuracy": results["source_accuracy"]}))


if __name__ == "__main__":
    main()
