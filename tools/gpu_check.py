"""The GPU check: everything that takes a device, run on one device, in one command.

    python tools/gpu_check.py                 # on CUDA (what `make gpu-check` runs): about 5 min on one modern GPU
    python tools/gpu_check.py --device cpu    # the same on the CPU (slower; CI runs parts of it)
    python tools/gpu_check.py --dry-run       # list the steps and their commands, run nothing

Three steps, each a subprocess with ``INFOVAE_DEVICE`` set to the device, so every tensor of
the package follows it (``iv.get_device()``), and two more where the hardware calls for them:

1. ``tests``: the unit tests that run code on a device (every test file except those that
   only read files or build the book: ``HOST_ONLY_TESTS``), quick profile;
2. ``chapters``: every chapter of the book executed at the quick profile under nbval (lax:
   a chapter passes when every cell runs and every assert holds; the committed notebooks are
   not modified);
3. ``bench``: ``benchmarks/bench_paper_scale.py`` at the paper profile on the device, which
   writes ``book/results/paper-scale-gpu.json`` (device name, torch and CUDA versions, seconds
   and FLOPs per training step of every model, the paper profile's estimated wall time);
4. ``fp16`` (on a CUDA GPU without native bf16, a T4 or a V100, where ``precision="auto"`` trains
   in fp16): the fp16 tests of ``tests/test_precision.py`` on the GPU (fp16 reaches the fp32 loss
   over 3 seeds, an overflow step skipped, the scaler resumed exactly);
5. ``ddp`` (with more than one visible GPU): the command-line test of ``tests/test_distributed.py``
   under ``torchrun`` on every visible GPU (NCCL): a resumed run equals the uninterrupted one and
   one process is refused (the float64 equality test runs on CPU processes in the ``tests`` step).

Every step runs with the Python that runs this script, which needs a torch built for the
device (a CUDA build for ``cuda``: ``torch.version.cuda`` is not None), pytest, nbval and the
package: ``make gpu-check`` uses ``.venv``'s, ``make gpu-check GPU_PYTHON=/path/to/python``
another one. A device that this torch cannot use stops the check at once, naming the fix.

Each step's wall time is printed, then a summary; the exit status is non-zero if any step
failed, and a warning is printed if the whole check exceeded its budget (``BUDGET_SECONDS``).
``--only`` runs some of the steps; ``--bench-args`` passes options to the benchmark (CI runs
``--only bench --device cpu --bench-args "--profile quick --steps 1 --iwae-images 1"``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS: tuple[str, ...] = ("tests", "chapters", "bench", "fp16", "ddp")
BUDGET_SECONDS = 8 * 60
# test files that never put a tensor on the device: install files, the built book, links
HOST_ONLY_TESTS: tuple[str, ...] = ("test_book.py", "test_environment.py", "test_publishing.py", "test_gpu_check.py",
                                    "test_colab_install.py")


@dataclass
class Step:
    """One step of the check: a command and the environment it adds."""

    name: str
    command: list[str]
    env: dict[str, str]

    def shell(self) -> str:
        """The step as one shell line (for --dry-run and the log)."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return f"{env} {shlex.join(self.command)}"


def device_tests(root: Path = ROOT) -> list[str]:
    """The test files that run code on a device, relative to ``root``."""
    return sorted(str(p.relative_to(root)) for p in (root / "tests").glob("test_*.py") if p.name not in HOST_ONLY_TESTS)


def default_output(device: str) -> str:
    """Where the benchmark's JSON goes: ``paper-scale-gpu.json`` on CUDA, ``paper-scale-<type>.json`` elsewhere."""
    kind = device.split(":")[0]
    return f"book/results/paper-scale-{'gpu' if kind == 'cuda' else kind}.json"


def plan(device: str, only: tuple[str, ...] = STEPS, bench_args: str = "", out: str | None = None) -> list[Step]:
    """The steps of the check on ``device``, in order."""
    python = sys.executable
    env = {"INFOVAE_DEVICE": device, "INFOVAE_PROFILE": "quick"}
    steps = {
        "tests": Step("tests", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *device_tests()], env),
        "chapters": Step(
            "chapters",
            [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env", "book"],
            env,
        ),
        "bench": Step(
            "bench",
            [python, "benchmarks/bench_paper_scale.py", "--device", device, "--out", out or default_output(device),
             *shlex.split(bench_args)],
            {"INFOVAE_DEVICE": device},
        ),
    }
    gpus, bf16 = cuda_hardware() if device.split(":")[0] == "cuda" else (0, True)
    if not bf16:
        steps["fp16"] = Step("fp16", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_precision.py",
                                      "-k", "fp16"], env)
    if gpus > 1:
        steps["ddp"] = Step("ddp", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_distributed.py",
                                    "-k", "command_line"],
                            {**env, "INFOVAE_DDP_DEVICE": "cuda", "INFOVAE_DDP_WORLD": str(gpus)})
    return [steps[name] for name in STEPS if name in only and name in steps]


def cuda_hardware() -> tuple[int, bool]:
    """``(visible CUDA GPUs, whether the first has native bf16)``, asked of a subprocess (``(0, True)`` without CUDA)."""
    probe = ("import torch; n = torch.cuda.device_count() if torch.cuda.is_available() else 0; "
             "print(n, int(n == 0 or torch.cuda.is_bf16_supported(including_emulation=False)))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if proc.returncode != 0:
        return 0, True
    count, bf16 = proc.stdout.split()
    return int(count), bool(int(bf16))


def check_device(device: str) -> str | None:
    """Why ``device`` cannot run the check here (``None`` when it can), e.g. CUDA absent."""
    env = {**os.environ, "INFOVAE_DEVICE": device}
    proc = subprocess.run([sys.executable, "-c", "import infovae as iv; print(iv.get_device())"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return lines[-1] if lines else f"python exited with {proc.returncode}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="torch device to check (default cuda)")
    parser.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps among {', '.join(STEPS)}")
    parser.add_argument("--bench-args", default="", help="extra options of bench_paper_scale.py")
    parser.add_argument("--out", default=None, help="the benchmark's JSON (default book/results/paper-scale-gpu.json on CUDA)")
    parser.add_argument("--dry-run", action="store_true", help="list the steps and their commands, run nothing")
    args = parser.parse_args(argv)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = sorted(set(only) - set(STEPS))
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; choose among {', '.join(STEPS)}")
    steps = plan(args.device, only, args.bench_args, args.out)
    if args.dry_run:
        for step in steps:
            print(f"{step.name}: {step.shell()}")
        return 0
    problem = check_device(args.device)
    if problem:
        print(f"gpu-check cannot run on {args.device!r}: {problem}", file=sys.stderr)
        return 2
    results = []
    start = time.perf_counter()
    for step in steps:
        print(f"==> {step.name}: {step.shell()}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(step.command, cwd=ROOT, env={**os.environ, **step.env}).returncode
        results.append((step.name, rc, time.perf_counter() - t0))
        print(f"<== {step.name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {results[-1][2]:.0f} s", flush=True)
    total = time.perf_counter() - start
    print(f"\ngpu-check on {args.device}:")
    for name, rc, seconds in results:
        print(f"  {name:<9} {'ok' if rc == 0 else 'FAILED':<7} {seconds:7.0f} s")
    print(f"  {'total':<17} {total:7.0f} s (budget {BUDGET_SECONDS} s)")
    if total > BUDGET_SECONDS:
        print(f"warning: the check took longer than its budget of {BUDGET_SECONDS // 60} minutes", file=sys.stderr)
    return 0 if all(rc == 0 for _, rc, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
