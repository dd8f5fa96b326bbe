"""The `keras-vit` command: every preset listed, every recipe reachable,
unknown commands refused."""

import pytest

import keras_vit
from keras_vit import cli


def test_presets_lists_every_family(capsys):
    assert cli.main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [
        name
        for family in ("detr", "dpt_depth", "dpt_segmentation", "segmenter", "vit")
        for name in keras_vit.list_presets(family)
    ]
    assert sorted(line.split()[0] for line in lines) == keras_vit.list_presets()


@pytest.mark.parametrize("command", sorted(cli.RECIPES))
def test_each_recipe_command_reaches_its_recipe(command, capsys):
    # A bad option is refused by the recipe's own parser (argparse: exit code 2).
    with pytest.raises(SystemExit) as error:
        cli.main([command, "--epochs", "0"])
    assert error.value.code == 2
    assert "expected a positive integer, got '0'" in capsys.readouterr().err


def test_unknown_command(capsys):
    assert cli.main(["nope"]) == 2
    assert "keras-vit segment" in capsys.readouterr().out
