"""`make venv`'s device probe (graphc.runtime.probe): simulators are not real devices.

On a machine without a system OpenCL driver, pyopencl still finds the Oclgrind ICD that the
`dev` extra installs; the probe must then say "no real device" so that `make venv` installs
PoCL's wheel, rather than leaving the demo to train on the simulator.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import graphc as gc
from graphc.runtime import probe

REPO_ROOT = Path(__file__).resolve().parents[1]
OCLGRIND = ("Oclgrind", ["Oclgrind Simulator"])
DEBIAN_POCL = ("Portable Computing Language", ["pthread-haswell-AMD EPYC"])


def _probe(platforms, capsys):
    status = probe.main(platforms=lambda: platforms)
    return status, capsys.readouterr().out


def test_only_oclgrind_is_no_real_device(capsys):
    status, out = _probe([OCLGRIND], capsys)
    assert status == 1
    assert "no real OpenCL device" in out
    assert "Oclgrind Simulator (Oclgrind): simulator, not counted" in out


def test_a_cpu_driver_beside_oclgrind_counts(capsys):
    status, out = _probe([OCLGRIND, DEBIAN_POCL], capsys)
    assert status == 0
    assert "1 real OpenCL device(s)" in out
    assert probe.real_devices([OCLGRIND, DEBIAN_POCL]) == [
        "pthread-haswell-AMD EPYC (Portable Computing Language)"]


@pytest.mark.parametrize("platforms", [[], [("Clover", [])]], ids=["no-platform", "no-device"])
def test_no_platform_or_an_empty_one_is_no_device(platforms, capsys):
    assert _probe(platforms, capsys)[0] == 1


def test_simulator_names_match_any_case():
    assert probe.is_simulator("OCLGRIND")
    assert not probe.is_simulator("rusticl")


def test_makefile_decides_on_the_probe():
    # The recipe that installs PoCL's wheel must run only when this probe fails.
    recipe = subprocess.run(["make", "-n", "-B", ".venv/.graphc-installed"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60).stdout
    probe_line = next(line for line in recipe.splitlines() if "pocl]" in line)
    assert probe_line.lstrip().startswith(".venv/bin/python -m graphc.runtime.probe ||")


def _pyopencl_libs():
    import pyopencl
    return Path(pyopencl.__file__).parent / ".libs"


@pytest.mark.skipif(not (_pyopencl_libs() / "oclgrind.icd").exists(),
                    reason="Oclgrind's pip ICD is not installed")
def test_system_drivers_hidden_leaves_no_real_device(tmp_path):
    # `OCL_ICD_VENDORS=<empty folder>`: what a machine without a system driver sees.
    pip_drivers = [p.name for p in _pyopencl_libs().glob("*.icd") if "oclgrind" not in p.name]
    env = {**os.environ, "OCL_ICD_VENDORS": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "graphc.runtime.probe"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert "Warning" not in result.stderr, result.stderr     # what make venv shows a newcomer
    if pip_drivers:                     # PoCL's wheel installed: a real device remains
        assert result.returncode == 0, result.stdout
    else:
        assert result.returncode == 1, result.stdout
        assert "Oclgrind Simulator (Oclgrind): simulator, not counted" in result.stdout


def _dry_run(target: str) -> list[str]:
    """The pytest command lines `make -n TARGET` would run."""
    done = subprocess.run(["make", "-n", target, "PYTEST_WORKERS=2"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if " -m pytest" in line]


def test_make_test_leaves_the_slow_tests_to_make_test_slow():
    import xdist  # noqa: F401  the dev extra installs pytest-xdist for `make test`
    (fast,) = _dry_run("test")
    assert '-m "not slow"' in fast and "-n 2" in fast
    (slow,) = _dry_run("test-slow")
    assert "-m slow" in slow
    assert _dry_run("test-all") == [fast, slow]


@pytest.mark.parametrize("platforms, expected", [
    (["Oclgrind"], "interpret"),
    (["Oclgrind", "Portable Computing Language"], None),
], ids=["simulator-only", "with-pocl"])
def test_the_demo_never_trains_on_a_simulator(platforms, expected, monkeypatch, capsys):
    from types import SimpleNamespace

    from graphc.models import demo
    found = [SimpleNamespace(platform_name=name, name=name) for name in platforms]
    monkeypatch.setattr("graphc.runtime.device.devices", lambda: found)
    monkeypatch.delenv("GRAPHC_DEVICE", raising=False)
    chosen = []
    monkeypatch.setattr(demo.lenet, "train",
                        lambda args: chosen.append(args.device) or {"model": None})
    monkeypatch.setattr(demo, "describe_step", lambda model: None)
    assert demo.main(["--plots", "none"]) == 0
    assert chosen == [expected]
    assert ("numpy reference interpreter" in capsys.readouterr().out) == (expected is not None)


def _fake_devices(monkeypatch, platforms):
    from types import SimpleNamespace
    found = [SimpleNamespace(platform_name=name, name=f"{name} device", index=i)
             for i, name in enumerate(platforms)]
    monkeypatch.setattr("graphc.runtime.device.devices", lambda: found)
    monkeypatch.delenv("GRAPHC_DEVICE", raising=False)
    return found


def test_the_default_device_is_never_a_simulator(monkeypatch):
    """With only Oclgrind, gc.function's default is an error that says how to pick it."""
    from graphc.runtime.device import select_device
    _fake_devices(monkeypatch, ["Oclgrind"])
    with pytest.raises(gc.DeviceError, match="only a simulator was found .*GRAPHC_DEVICE=oclgrind"):
        select_device()


def test_a_simulator_is_chosen_by_name(monkeypatch):
    from graphc.runtime.device import select_device
    found = _fake_devices(monkeypatch, ["Oclgrind"])
    monkeypatch.setattr("graphc.runtime.device.best_device", lambda c: c[0])
    assert select_device("oclgrind") is found[0]


def test_fit_with_only_a_simulator_runs_on_the_interpreter(monkeypatch):
    from graphc.nn import model
    _fake_devices(monkeypatch, ["Oclgrind"])
    monkeypatch.setattr(model, "_warned_no_device", True)
    assert model._default_device(None) == model.DEVICE_INTERPRET
