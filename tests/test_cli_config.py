"""``--config FILE``: options from TOML, YAML or JSON, flags overriding them, and runs that record theirs.

A training run writes its resolved options into ``summary.json`` and a bench into ``results.json``; giving
either file back to ``--config`` repeats the run with the same options (checked here by running it again).
"""

from __future__ import annotations

import json

import click
import numpy as np
import pytest
from PIL import Image

from sqakd_edge.cli_options import FLOATS, INPUT_SIZE, REMOTE
from sqakd_edge.errors import ConfigError

from .bench_fixtures import cached_export
from .cli_helpers import one_line_error, run


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "images"
    for c in ("class0", "class1"):
        (root / c).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(np.full((8, 8), 25 * i + 60 * (c == "class1"), np.uint8)).save(root / c / f"{i}.png")
    return root


def _options(run_dir, name="summary.json", command="train"):
    return json.loads((run_dir / name).read_text())["options"][command]


def test_train_takes_options_from_toml_flags_win_and_summary_json_repeats_the_run(tmp_path, images):
    config = tmp_path / "run.toml"
    config.write_text(f'[train]\nfp = true\ndata = "folder:{images}"\nepochs = 1\nbatch-size = 4\nseed = 3\n'
                      'no_progress = true\n[bench]\niters = 5\n')  # another command's table is left alone
    first = run("train", "--config", config, "--out", tmp_path / "a", "--seed", "5")
    assert first.exit_code == 0, first.output
    recorded = _options(tmp_path / "a")
    assert recorded["seed"] == 5 and recorded["epochs"] == 1 and recorded["batch_size"] == 4  # flag over file
    assert recorded["float_teacher"] is True and recorded["data"] == f"folder:{images}"

    again = run("train", "--config", tmp_path / "a" / "summary.json", "--out", tmp_path / "b")
    assert again.exit_code == 0, again.output
    assert {**_options(tmp_path / "b"), "out": None} == {**recorded, "out": None}


def test_yaml_and_json_configs_and_bad_files_are_one_line(tmp_path, images):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(f"fp: true\ndata: folder:{images}\nepochs: 1\nbatch-size: 4\nno-progress: true\n")
    assert run("train", "--config", yaml_file, "--out", tmp_path / "y").exit_code == 0
    assert _options(tmp_path / "y")["epochs"] == 1

    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"train": {"learning_rate": 0.1}}))
    one_line_error(run("train", "--config", unknown, "--out", tmp_path / "u"),
                   "'learning_rate' is not an option of 'sqakd-edge train'", "sqakd-edge train --help")
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nfp = true\n")
    one_line_error(run("train", "--config", broken, "--out", tmp_path / "u"), "is not valid TOML")
    other = tmp_path / "run.ini"
    other.write_text("[train]\n")
    one_line_error(run("train", "--config", other, "--out", tmp_path / "u"), "unknown format .ini")
    listed = tmp_path / "list.yaml"
    listed.write_text("- fp\n")
    one_line_error(run("train", "--config", listed, "--out", tmp_path / "u"), "must hold a table of options")
    # a bad value from the file is checked like the flag's
    bad = tmp_path / "bad.toml"
    bad.write_text(f'fp = true\ndata = "folder:{images}"\nlr = nan\n')
    one_line_error(run("train", "--config", bad, "--out", tmp_path / "u"), "lr must be a finite number")
    assert not (tmp_path / "u").exists()


def test_bench_records_its_options_and_results_json_repeats_them(tmp_path_factory, tmp_path):
    export = cached_export(tmp_path_factory)
    config = tmp_path / "bench.json"
    config.write_text(json.dumps({"bench": {"batch": "1,2", "iters": 6, "warmup": 1, "threads": 1,
                                            "round-iters": 3, "no-plot": True, "quiet": True}}))
    first = run("bench", export, "--config", config, "--out", tmp_path / "a")
    assert first.exit_code == 0, first.output
    recorded = _options(tmp_path / "a", "results.json", "bench")
    assert recorded["batch"] == [1, 2] and recorded["iters"] == 6
    again = run("bench", export, "--config", tmp_path / "a" / "results.json", "--out", tmp_path / "b")
    assert again.exit_code == 0, again.output
    assert {**_options(tmp_path / "b", "results.json", "bench"), "out": None} == {**recorded, "out": None}
    # the remote group knows its own flags, from a file as from the command line
    remote = tmp_path / "remote.toml"
    remote.write_text('[bench]\nhost = "me@nano"\niters = 6\n')
    one_line_error(run("bench", export, "--config", remote, "--out", tmp_path / "c"),
                   "--host are for a remote --device")
    assert REMOTE.given({"host": None, "setup": False, "port": 22}) == ["--port"]


@pytest.mark.parametrize(("given", "expected"), [
    ("224", (224, 224)), ("224x160", (224, 160)), ("96×64", (96, 64)), (32, (32, 32)), ((224, 160), (224, 160)),
])
def test_input_size_takes_the_flag_a_config_number_and_a_recorded_pair(given, expected):
    assert INPUT_SIZE.convert(given, None, None) == expected


@pytest.mark.parametrize("given", ["abc", "0", "2x0x3", "", "224x", (0, 5)])
def test_a_bad_input_size_is_a_config_error(given):
    with pytest.raises(ConfigError, match="--input-size .* is not N or HxW"):
        INPUT_SIZE.convert(given, None, None)


def test_floats_take_a_comma_list_a_config_list_and_refuse_non_finite_values():
    mean = next(p for p in click.Command("x", params=[click.Option(["--mean"], type=FLOATS)]).params)
    assert FLOATS.convert("0.485, 0.456,0.406", mean, None) == (0.485, 0.456, 0.406)
    assert FLOATS.convert((0.5, 1), mean, None) == (0.5, 1.0)
    for bad in ("1,x", "nan", "", ",", ("a",), (float("inf"),)):
        with pytest.raises(ConfigError, match="^--mean .* is not a comma-separated list of finite numbers"):
            FLOATS.convert(bad, mean, None)
