"""What the benchmark scripts share: timing on a shared machine, memory, the machine's description, the report
frame (``BENCH_HOME``, header, ``--out``), and real images to measure on.

Used by ``bench_extraction.py``, ``bench_run.py``, ``bench_probes.py`` and ``bench_dinobloom.py``; run those,
not this module.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
PBC_DEFAULT = REPO_ROOT.parent / "shared" / "data" / "pbc" / "labeled"
KEYS = REPO_ROOT / "tests" / "data" / "checkpoint_keys.json"  # key names and shapes of the published checkpoints


def _status_kib(field: str) -> int:
    """A memory field of this process (KiB) from /proc/self/status; -1 where it cannot be read."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def rss_kib() -> int:
    """Current resident set size of this process (KiB)."""
    return _status_kib("VmRSS")


def hwm_kib() -> int:
    """Peak resident set size of this process image (KiB): VmHWM. ``ru_maxrss`` is not used because Linux
    carries the parent's high-water mark over fork/vfork + exec into a child's ``ru_maxrss``."""
    return _status_kib("VmHWM")


class CpuMeter:
    """CPU seconds spent by *other* processes during a timed interval: all CPUs' busy time (/proc/stat)
    minus this process's and its reaped children's CPU time. Other users of the machine show up here."""

    def __enter__(self):
        self._busy0, self._own0, self._t0 = self._busy(), self._own(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._t0
        self.own = self._own() - self._own0
        self.busy = self._busy() - self._busy0
        self.foreign = max(0.0, self.busy - self.own)
        return False

    @staticmethod
    def _busy() -> float:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        except OSError:
            return 0.0
        user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
        return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


QUIET = {"max_wait_s": 180.0, "waited_s": 0.0, "gave_up": 0}


def wait_quiet(max_wait_s: float | None = None, window_s: float = 1.0, threshold: float = 0.05) -> float:
    """Before a timed pass: wait until other processes use under ``threshold`` of the CPUs for a ``window_s``
    window (this machine may be shared); give up after ``max_wait_s``. Returns the seconds waited."""
    limit = QUIET["max_wait_s"] if max_wait_s is None else max_wait_s
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    t0 = time.perf_counter()
    while True:
        with CpuMeter() as meter:
            time.sleep(window_s)
        if meter.foreign < threshold * cpus * meter.wall:
            break
        if time.perf_counter() - t0 > limit:
            QUIET["gave_up"] += 1
            break
    waited = time.perf_counter() - t0
    QUIET["waited_s"] += waited
    return waited


def mib(kib: int) -> str:
    return "n/a" if kib < 0 else f"{kib / 1024:.0f}"


def fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_info() -> dict:
    import numpy
    import PIL
    import sklearn
    import timm
    import torch
    import torchvision

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    blas = []
    try:
        from threadpoolctl import threadpool_info

        blas = [f"{p.get('internal_api')} ({p.get('num_threads')} threads)" for p in threadpool_info()]
    except Exception:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "cpus_usable": affinity,
        "memory": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
        "pillow": PIL.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "thread_pools": ", ".join(sorted(set(blas))) or "n/a",
        "cuda_available": torch.cuda.is_available(),
    }


def write_dinobloom(size: str, path: Path) -> Path:
    """``DinoBloom-<size>.pth`` in the published format (``{"teacher": {...}}``, the key names and shapes of
    :data:`KEYS`), seeded random values: the weights cannot be downloaded here, and speed does not depend on them."""
    import json

    import torch

    spec = json.loads(KEYS.read_text())[f"dinobloom_{size}"]
    g = torch.Generator().manual_seed(0)
    torch.save({"teacher": {k: torch.randn(s, generator=g) * 0.02 for k, s in spec["teacher"].items()}}, path)
    return path


def emit_report(lines: list[str], out: Path | None) -> int:
    """Print the report (Markdown lines) and write it to ``out`` when given; the script's exit code."""
    report = "\n".join(lines) + "\n"
    print(report)
    if out:
        Path(out).write_text(report)
    return 0


def copy_pbc_subset(src: Path, dst: Path, per_class: int) -> Path:
    """The first ``per_class`` files (sorted) of every class folder of ``src``, copied to ``dst/<class>/``."""
    for class_dir in sorted(p for p in src.iterdir() if p.is_dir()):
        files = sorted(p for p in class_dir.iterdir() if p.is_file())[:per_class]
        (dst / class_dir.name).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, dst / class_dir.name / f.name)
    return dst


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark script has; scripts add their own."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, one repeat")
    p.add_argument("--out", type=Path, help="also write the Markdown report here")
    p.add_argument("--max-quiet-wait", type=float, default=180.0,
                   help="before each timed pass, wait up to this many seconds for other processes to go idle")
    return p


def real_images_parser(description: str, extractors: str, per_class: int) -> argparse.ArgumentParser:
    """The options of the scripts that compare settings of the same extractors on real PBC images
    (bench_precision, bench_authors); a script adds its own and parses."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--extractors", default=extractors)
    p.add_argument("--per-class", type=int, default=per_class)
    p.add_argument("--weights", action="append", default=[], help="NAME=PATH, repeatable")
    p.add_argument("--device", default="auto")
    p.add_argument("--images", type=Path, default=PBC_DEFAULT, help="a class-folder tree of real images")
    p.add_argument("--out", type=Path)
    return p


def run_benchmark(args, title: str, script: str, measure: Callable[[Path, Path], list[str]]) -> int:
    """Run ``measure(home, scratch) -> report sections`` in a fresh ``BENCH_HOME`` (refused when its feature
    cache is not empty, so "cold" numbers are cold), then print the report with the machine header and write it
    to ``--out``."""
    QUIET["max_wait_s"] = args.max_quiet_wait
    if os.environ.get("BENCH_HOME"):
        home = Path(os.environ["BENCH_HOME"]).expanduser().resolve()
    else:
        home = Path(tempfile.mkdtemp(prefix="hemabench-bench-home-"))
        os.environ["BENCH_HOME"] = str(home)
        log(f"BENCH_HOME not set: using {home}")
    if (home / "cache").exists() and any((home / "cache").iterdir()):
        raise SystemExit(f"BENCH_HOME={home} has a non-empty cache/; point BENCH_HOME at a fresh folder")
    home.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=home))
    started = _dt.datetime.now().astimezone()
    t_all = time.perf_counter()
    info = machine_info()
    try:
        sections = measure(home, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    command = f"BENCH_HOME=$(mktemp -d) .venv/bin/python benchmarks/{script}" + (" --quick" if args.quick else "")
    header = [
        f"# {title}" + (" (--quick smoke run)" if args.quick else ""),
        "",
        f"- Date: {started.isoformat(timespec='seconds')}; total benchmark time {time.perf_counter() - t_all:.0f} s",
        f"- Command: `{command}` (from the repository root)",
        f"- Machine: CPU `{info['cpu']}`, {info['logical_cpus']} logical CPUs ({info['cpus_usable']} usable), "
        f"{info['memory']} RAM, CUDA available: {info['cuda_available']}; {info['platform']}",
        f"- Versions: Python {info['python']}, torch {info['torch']}, torchvision {info['torchvision']}, "
        f"timm {info['timm']}, numpy {info['numpy']}, scikit-learn {info['sklearn']}, Pillow {info['pillow']}",
        f"- Threads: torch.get_num_threads() = {info['torch_threads']} (inter-op {info['torch_interop_threads']}); "
        f"native thread pools: {info['thread_pools']}",
        f"- Shared-machine guard: before every timed pass the script waited until other processes used < 5% of "
        f"the CPUs for 1 s (waited {QUIET['waited_s']:.0f} s in all; gave up after {QUIET['max_wait_s']:.0f} s "
        f"{QUIET['gave_up']} time(s)). The `other processes' CPU s` columns show what still overlapped.",
    ]
    report = "\n".join(header) + "\n\n" + "\n\n".join(sections) + "\n"
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0
