"""The GPU check (`make gpu-check`, tools/gpu_check.py) works before a GPU ever sees it.

CI has no GPU: it runs the check's plan, its refusal of a device that is absent, and its
benchmark step for real on the CPU at the quick profile (the chapters already run under
nbval in CI, and the unit tests are this test session). The benchmark is also checked to
take its models from the package's profile setups, so it follows any change of them.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import gpu_check  # noqa: E402


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_paper_scale", ROOT / "benchmarks" / "bench_paper_scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_makefile_runs_the_check_on_cuda():
    makefile = (ROOT / "Makefile").read_text()
    assert "\ngpu-check: env\n\t$(GPU_PYTHON) tools/gpu_check.py --device $(DEVICE)\n" in makefile
    assert "DEVICE  ?= cuda" in makefile and "GPU_PYTHON ?= $(BIN)/python" in makefile


def test_dry_run_lists_tests_chapters_and_bench_on_the_device(capsys):
    assert gpu_check.main(["--dry-run", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["tests", "chapters", "bench"]
    tests, chapters, bench = lines
    assert "INFOVAE_DEVICE=cpu" in tests and "INFOVAE_PROFILE=quick" in tests and "tests/test_train.py" in tests
    assert "--nbval-lax" in chapters and chapters.endswith(" book") and "INFOVAE_PROFILE=quick" in chapters
    assert "bench_paper_scale.py --device cpu --out book/results/paper-scale-cpu.json" in bench
    assert gpu_check.default_output("cuda:0") == "book/results/paper-scale-gpu.json"


def test_device_tests_are_every_test_file_but_the_host_only_ones():
    files = gpu_check.device_tests()
    every = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py"))
    assert set(every) - set(files) == {f"tests/{name}" for name in gpu_check.HOST_ONLY_TESTS if (ROOT / "tests" / name).exists()}
    assert {"tests/test_train.py", "tests/test_runtime.py", "tests/test_pixelcnn.py"} <= set(files)


def test_unknown_step_is_refused():
    with pytest.raises(SystemExit):
        gpu_check.main(["--dry-run", "--only", "tests,benchmark"])


def test_an_absent_device_is_refused_before_anything_runs():
    proc = subprocess.run([sys.executable, "tools/gpu_check.py", "--device", "meta"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "cannot run on 'meta'" in proc.stderr and "INFOVAE_DEVICE" in proc.stderr
    assert "==>" not in proc.stdout  # no step started


def test_bench_follows_the_profile_setups_of_the_package():
    from infovae.experiments import flexible_decoders, mnist_inference, two_points

    bench = load_bench()
    for profile in ("book", "paper"):
        jobs = bench.jobs_for_profile(profile, data_images=200)
        by = {(j.experiment, j.model): j for j in jobs}
        c6 = flexible_decoders.FlexibleDecodersConfig.for_profile(profile)
        for name in c6.models:
            job = by[("fig6", name)]
            assert (job.steps, job.batch_size) == (c6.setup.iterations, c6.setup.batch_size)
            if c6.sweep_setup is None:
                assert job.models >= len(c6.latent_dims)  # and again at focus_dim for further seeds
            else:  # the focus models over seeds, and the sweep over dimensions at its own setup
                sweep = by[("fig6", f"{name} (sweep)")]
                assert job.models == len(c6.focus_seeds) and sweep.models == len(c6.latent_dims)
                assert (sweep.steps, sweep.batch_size) == (c6.sweep_setup.iterations, c6.sweep_setup.batch_size)
            decoder = job.build().decoder
            assert sum(p.numel() for p in decoder.parameters()) > 0
        c25 = mnist_inference.MnistInferenceConfig.for_profile(profile)
        assert by[("fig2-5", "mmd")].models == len(c25.sizes) and by[("fig2-5", "mmd")].steps == c25.iterations
        assert by[("fig1", "infovae")].steps == two_points.TwoPointsConfig.for_profile(profile).iterations


@pytest.mark.slow
def test_the_check_runs_its_benchmark_on_the_cpu(tmp_path, capsys):
    """The check's benchmark step, end to end, at the quick profile (about 20 s on one core)."""
    out = tmp_path / "paper-scale-cpu.json"
    rc = gpu_check.main(["--device", "cpu", "--only", "bench", "--out", str(out),
                         "--bench-args", "--profile quick --steps 1 --iwae-images 1"])
    log = capsys.readouterr().out
    assert rc == 0, log[-3000:]
    assert "bench" in log and "ok" in log
    record = json.loads(out.read_text())
    assert record["device"] == "cpu" and record["profile"] == "quick"
    assert record["device_name"] and record["torch"] and "cuda" in record
    experiments = {"fig1", "fig2-5", "fig6", "table1"}
    assert set(record["total_seconds"]) == experiments
    assert set(record["estimated_total_seconds"]) == {"t4", "a100"}
    for estimates in record["estimated_total_seconds"].values():
        assert set(estimates) == experiments and all(v > 0 for v in estimates.values())
    for row in record["rows"]:
        assert row["seconds_per_step"] > 0 and row["flops_per_step"] > 0 and row["ops_per_step"] > 0, row


EXPERIMENTS = {"fig1": "Fig. 1", "fig2-5": "Figs. 2 to 5", "fig6": "Fig. 6", "table1": "Table 1"}


def duration(seconds: float) -> str:
    """How the appendix's cost table writes a duration: s below 2 min, min below 2 h, h below 2 days, else days."""
    for unit, size, limit in (("s", 1, 120), ("min", 60, 7200), ("h", 3600, 2 * 86400)):
        if seconds < limit:
            return f"{seconds / size:.0f} {unit}" if unit == "s" else f"{seconds / size:.1f} {unit}"
    return f"{seconds / 86400:.1f} days"


def cost_table_rows(root: Path = ROOT) -> list[str]:
    """The rows of the appendix's cost table, from the benchmark's results of the book and paper profiles."""
    book, paper = (json.loads((root / "book" / "results" / name).read_text())
                   for name in ("paper-scale-cpu-book.json", "paper-scale-cpu.json"))

    def gflop(record: dict, key: str) -> str:
        return f"{max(r['flops_per_step'] for r in record['rows'] if r['experiment'] == key) / 1e9:.3g}"

    def cells(key: str | None) -> list[str]:
        def total(values: dict) -> float:
            return sum(values.values()) if key is None else values[key]
        return [duration(total(book["estimated_total_seconds"]["t4"])), duration(total(book["estimated_total_seconds"]["a100"])),
                duration(total(paper["total_seconds"])), duration(total(paper["estimated_total_seconds"]["t4"])),
                duration(total(paper["estimated_total_seconds"]["a100"]))]

    rows = [f"| {label} | {' | '.join(cells(key))} | {gflop(book, key)} / {gflop(paper, key)} |"
            for key, label in EXPERIMENTS.items()]
    rows.append(f"| Part II in all | {' | '.join(cells(None))} | |")
    return rows


def test_appendix_cost_table_is_read_off_the_benchmark_results():
    """The appendix's estimates per profile and device are those of the committed benchmark files."""
    text = (ROOT / "book" / "appendix_reproduction.md").read_text()
    for row in cost_table_rows():
        assert row in text, row
    for ref in load_bench().REFERENCE_DEVICES.values():
        assert f"{ref['peak_flops'] / 1e12:g} TFLOP/s" in text and f"{ref['efficiency']:.0%}" in text
        assert f"{ref['seconds_per_op'] * 1e6:g} µs" in text
