"""`graphc` on the command line: a user's ordinary mistakes end with one line on stderr and
exit status 2 (as argparse's errors do), never a traceback or a quiet fall-back."""
import pytest

import graphc.tune
from graphc import cli
from graphc.data import DEBIAN_DATASETS

# Options that make a training run that should not have started finish quickly instead.
QUICK = ["--epochs", "1", "--limit", "32", "--plots", "none", "--quiet", "--device", "interpret"]


def run(argv, capsys):
    """(exit status, stdout, stderr) of `graphc ARGV`."""
    try:
        status = cli.main(argv)
    except SystemExit as done:              # argparse's own errors
        status = done.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def usage_error(argv, capsys) -> str:
    """The one line a mistake prints, checked to be one line with status 2."""
    status, _, err = run(argv, capsys)
    assert status == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"graphc {argv[0]}: error: ") or err.startswith("graphc: error: ")
    return err


def test_train_on_a_device_that_is_not_there(cl_device, capsys):
    err = usage_error(["train", "mlp", "--device", "99"], capsys)
    assert "device '99' not found; available devices: 0: " in err
    assert cl_device.name in err


def test_train_with_no_epochs(capsys):
    err = usage_error(["train", "lenet", "--epochs", "0"], capsys)
    assert "argument --epochs: must be at least 1, got 0" in err


@pytest.mark.parametrize("option, value, text", [
    ("--batch-size", "0", "must be at least 1, got 0"),
    ("--limit", "-5", "must be at least 1, got -5"),
    ("--augment", "two", "'two' is not a whole number"),
])
def test_train_options_out_of_range(option, value, text, capsys):
    err = usage_error(["train", "mlp", option, value], capsys)
    assert f"argument {option}: {text}" in err


def test_train_data_dir_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    err = usage_error(["train", "mlp", "--data-dir", str(missing), *QUICK], capsys)
    assert f"--data-dir {missing}: no such folder" in err


def test_train_data_dir_with_a_data_set_that_does_not_read_it(tmp_path, capsys):
    # Before: --data-dir was ignored and the digits trained without a word.
    err = usage_error(["train", "mlp", "--data-dir", str(tmp_path), *QUICK], capsys)
    assert f"--data-dir {tmp_path} is only read for --dataset mnist or fashion-mnist" in err


def test_train_data_dir_without_the_files_does_not_fall_back(tmp_path, capsys):
    # Before: Debian's Fashion-MNIST was used instead of the folder the user named.
    argv = ["train", "mlp", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path), *QUICK]
    err = usage_error(argv, capsys)
    assert str(tmp_path) in err
    if (DEBIAN_DATASETS / "fashion-mnist").is_dir():
        assert f"--data-dir {tmp_path} holds no fashion-mnist IDX files (they are in " in err
    else:
        assert "fashion IDX files" in err and "not found" in err


def test_unknown_option_is_one_line(capsys):
    err = usage_error(["train", "mlp", "--bogus"], capsys)
    assert "unrecognized arguments: --bogus (see graphc --help)" in err


def test_dump_a_script_that_is_not_there(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = usage_error(["dump", "missing.py"], capsys)
    assert err == "graphc dump: error: missing.py: no such file\n"
    assert not (tmp_path / "graphc_dump").exists()


@pytest.mark.parametrize("shape", ["12x", "0", "2x3", "axbxc", "4x4x-4", "2x2x²"])
def test_tune_a_shape_that_is_not_one(shape, capsys):
    err = usage_error(["tune", "--gemm", shape], capsys)
    assert f"argument --gemm: {shape!r} is not a GEMM shape: expected MxNxK or N" in err


def test_tune_with_nothing_to_tune(capsys):
    err = usage_error(["tune"], capsys)
    assert "nothing to tune: give --gemm MxNxK" in err


def test_tune_a_script_that_is_not_there(tmp_path, capsys):
    err = usage_error(["tune", str(tmp_path / "missing.py")], capsys)
    assert f"{tmp_path / 'missing.py'}: no such file" in err


def test_tune_says_which_tiling_won_and_where_it_is_saved(cl_device, tmp_path, monkeypatch,
                                                          capsys):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "kernels"))
    few = ({}, {"rows": 4}) if cl_device.type == "cpu" else ({}, {"ts": 8})
    monkeypatch.setattr(graphc.tune, "CPU_CANDIDATES", few)
    monkeypatch.setattr(graphc.tune, "GPU_CANDIDATES", few)
    status, out, _ = run(["tune", "--gemm", "16x8x4", "--device", str(cl_device.index)], capsys)
    assert status == 0
    saved = graphc.tune.tuning_file(cl_device)
    assert saved.is_file() and tmp_path / "kernels" in saved.parents
    best = graphc.tune.cached_tuning(cl_device, graphc.tune.GemmSpec(
        1, 16, 8, 4, "float", False, False, 0, 0))
    winner = cli._tiling_text(best)
    assert f"16x8x4: best {winner} (" in out and f"saved to {saved}" in out


def test_bench_runs_the_table_script(capsys):
    if not cli.bench_script().is_file():
        pytest.skip("not a source checkout: no bench/run.py")
    status, out, _ = run(["bench", "--help"], capsys)
    assert status == 0
    assert "usage: run.py" in out and "--only ONLY" in out and "--starts STARTS" in out


def test_bench_without_a_source_checkout(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "bench_script", lambda: tmp_path / "bench" / "run.py")
    err = usage_error(["bench"], capsys)
    assert f"the benchmark table is bench/run.py of a source checkout, and there is none at " \
           f"{tmp_path / 'bench' / 'run.py'}" in err
