"""The command line ``python -m infovae``: help, the reproduce registry, a tiny train/evaluate run."""

import json
import subprocess
import sys

import pytest

from infovae.__main__ import REPRODUCTIONS, main
from infovae.experiments import EXPERIMENTS
from infovae.train import load_checkpoint


@pytest.fixture(autouse=True)
def _restore_environment(monkeypatch):
    """main() sets INFOVAE_PROFILE / INFOVAE_DEVICE for the process: undo that after each test."""
    monkeypatch.setenv("INFOVAE_PROFILE", "quick")
    monkeypatch.setenv("INFOVAE_DEVICE", "cpu")


def test_module_help_runs_as_a_program():
    proc = subprocess.run([sys.executable, "-m", "infovae", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for word in ("train", "evaluate", "reproduce", "--profile", "--device", "--seed", "--out"):
        assert word in proc.stdout


@pytest.mark.parametrize("command", ["train", "evaluate", "reproduce"])
def test_command_help_explains_the_common_options(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--profile", "--device", "--seed", "--out"):
        assert option in text


def test_reproduce_lists_and_refuses_what_is_missing(capsys):
    assert main(["reproduce", "--list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in REPRODUCTIONS)
    missing = [name for name in REPRODUCTIONS if name not in EXPERIMENTS]
    if missing:
        assert main(["reproduce", missing[0]]) != 0
        assert "not implemented yet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "fig99"])


def test_bad_device_is_a_clear_error(capsys):
    assert main(["reproduce", "--list", "--device", "not-a-device"]) == 2
    assert "not a torch device" in capsys.readouterr().err


def test_tiny_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--profile", "quick", "--device", "cpu", "--seed", "1", "--out", str(out)]
    args = ["train", *common, "--model", "mlp", "--preset", "mmd-vae", "--latent-dim", "2", "--train-size", "200",
            "--iterations", "6", "--batch-size", "50", "--log-every", "3", "--no-progress"]
    assert main(args) == 0
    assert "trained mlp" in capsys.readouterr().out
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] == 6 and state["meta"]["latent_dim"] == 2
    history = json.loads((out / "history.json").read_text())
    assert history["loss"][0] == [3, 6]

    assert main([*args[:-3], "--iterations", "9", "--log-every", "3", "--resume", "--no-progress"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 9

    assert main(["evaluate", str(out / "checkpoint.pt"), *common, "--size", "100", "--iwae-samples", "4"]) == 0
    printed = capsys.readouterr().out
    assert "reconstruction" in printed and "log_likelihood" in printed
    results = json.loads((out / "evaluation.json").read_text())
    assert results["log_likelihood"] < 0 and results["loss"] > 0


def test_optimizer_and_scheduler_are_choices(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--profile", "quick", "--device", "cpu", "--seed", "1", "--out", str(out), "--model", "mlp",
            "--preset", "elbo", "--latent-dim", "2", "--train-size", "100", "--iterations", "4", "--batch-size", "50",
            "--log-every", "1", "--no-progress", "--optimizer", "sgd", "--optimizer-options", '{"momentum": 0.9}',
            "--lr", "0.01", "--scheduler", "steplr", "--scheduler-options", '{"step_size": 2, "gamma": 0.5}']
    assert main(args) == 0
    config = load_checkpoint(out / "checkpoint.pt")["config"]
    assert (config["optimizer"], config["optimizer_options"], config["scheduler"]) == ("sgd", {"momentum": 0.9}, "steplr")
    assert json.loads((out / "history.json").read_text())["lr"][1] == [0.01, 0.01, 0.005, 0.005]
    capsys.readouterr()
    for bad, message in ((["--scheduler-options", "{step_size: 2}"], "must be a JSON object"),
                         (["--optimizer", "lbfgs"], "invalid choice")):
        with pytest.raises(SystemExit) as stop:  # argparse: usage and exit status 2
            main([*args, *bad])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    assert main([*args, "--optimizer-options", '{"lr": 1}']) == 2
    assert "must not set lr" in capsys.readouterr().err
