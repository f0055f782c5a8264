"""The linear probe's GPU path (scikit-learn's array-API dispatch on torch tensors), run here on CPU tensors:
a converged fit gives the CPU path's predictions; an unconverged one is refitted on the CPU."""

import numpy as np
import pytest

import protocols.linear as linear
from protocols import get_protocol
from protocols.base import evaluation_device
from protocols.linear import LinearProbe, fit_predict_on_device, paper_c

# built-ins through the registry, which names them (their module objects carry no name)
LINEAR = get_protocol("linear")


def _problem(seed=0, n=400, dim=32, n_classes=5, noise=1.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim))
    y = rng.integers(0, n_classes, n)
    x = (centers[y] + noise * rng.normal(size=(n, dim))).astype(np.float32)
    return x[:300], y[:300], x[300:], n_classes


def test_scipy_array_api_is_on_when_bench_is_imported_first():
    assert linear.scipy_array_api_enabled()


def test_array_api_fit_on_torch_tensors_equals_the_numpy_fit():
    x_train, y_train, x_test, n_classes = _problem()
    labels, proba, converged = fit_predict_on_device(x_train, y_train, x_test, paper_c(32, y_train), 1000, "cpu")
    assert converged
    cpu = LINEAR.fit_predict(x_train, y_train, x_test, n_classes)
    np.testing.assert_array_equal(labels, cpu.labels)
    np.testing.assert_allclose(proba, cpu.proba, atol=1e-6)


@pytest.fixture
def fake_cuda(monkeypatch):
    """Route the probe as on a CUDA host, with the device fit on CPU tensors; count the device fits."""
    calls = []

    def on_cpu_tensors(*args):
        calls.append(args)
        return fit_predict_on_device(*args[:-1], "cpu")

    monkeypatch.setattr(linear, "fit_predict_on_device", on_cpu_tensors)
    with evaluation_device("cuda:0"):
        yield calls


def test_converged_device_fit_is_used(fake_cuda):
    x_train, y_train, x_test, n_classes = _problem()
    ours = LINEAR.fit_predict(x_train, y_train, x_test, n_classes)
    assert len(fake_cuda) == 1 and ours.notes == []
    with evaluation_device("cpu"):
        np.testing.assert_array_equal(ours.labels, LINEAR.fit_predict(x_train, y_train, x_test, n_classes).labels)


def test_unconverged_device_fit_is_refitted_on_the_cpu(fake_cuda, monkeypatch):
    x_train, y_train, x_test, n_classes = _problem(noise=6.0)
    probe = LinearProbe("linear-short", max_iter=5)
    ours = probe.fit_predict(x_train, y_train, x_test, n_classes)
    assert len(fake_cuda) == 1
    assert any("refitted on the CPU" in note for note in ours.notes)
    assert any("did not converge in 5 iterations" in note for note in ours.notes)
    with evaluation_device("cpu"):
        reference = probe.fit_predict(x_train, y_train, x_test, n_classes)
    np.testing.assert_array_equal(ours.labels, reference.labels)
    np.testing.assert_array_equal(ours.proba, reference.proba)  # the CPU fit itself, bit for bit


def test_without_scipys_array_api_the_probe_stays_on_the_cpu_and_says_how_to_enable_it(fake_cuda, monkeypatch):
    monkeypatch.setattr(linear, "scipy_array_api_enabled", lambda: False)
    x_train, y_train, x_test, n_classes = _problem()
    ours = LINEAR.fit_predict(x_train, y_train, x_test, n_classes)
    assert fake_cuda == []
    assert any("SCIPY_ARRAY_API=1" in note for note in ours.notes)


def test_importing_bench_leaves_the_process_alone_and_the_command_switches_scipys_array_api_on():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "SCIPY_ARRAY_API"}
    probe = "import os, {m}; print(os.environ.get('SCIPY_ARRAY_API'))"
    run = lambda module: subprocess.run([sys.executable, "-c", probe.format(m=module)], env=env, text=True,  # noqa: E731
                                        capture_output=True, check=True).stdout.strip()
    assert run("bench") == "None" and run("bench.runner") == "None"
    assert run("bench.cli") == "1"
    assert run("scipy, bench.cli") == "None"  # scipy came first: the switch would claim what scipy did not do

