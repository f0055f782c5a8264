"""Model build time: the initialising build (random init, then the file copied in) against the meta-device build
(no init, the file's tensors assigned, memory-mapped), for DinoBloom files in the published format.

    BENCH_HOME=$(mktemp -d) python benchmarks/bench_build.py [--sizes s,g] [--out report.md]

The DinoBloom weights cannot be downloaded here, so the script writes each file in the published format
(``{"teacher": {"backbone.*", "dino_head.*", "ibot_head.*"}}``: the key names and shapes of
tests/data/checkpoint_keys.json, random values); build time does not depend on the values. Each build runs in a
fresh process (the page cache holds the file: every build reads it warm, as a second run does), and is timed in
steps (after the imports): ``entry.build`` (create + load), ``entry.fingerprint`` (sha256 of the file and of the
model's state), and
``model.to(device)``. The file's sha256 is remembered per BENCH_HOME (``bench.core.files.sha256_file_remembered``):
each path runs once in a fresh BENCH_HOME (hashing the file, as a first run does) and once more in the same one
(as every later run does). The peak resident memory of the process is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import REPO_ROOT, emit_report, machine_info, write_dinobloom  # noqa: E402

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
import timm, torch
from extractors import get_extractor
entry = get_extractor({name!r}).replace(meta_init={meta!r})
t0 = time.perf_counter()
model = entry.build({path!r})
t1 = time.perf_counter()
fingerprint = entry.fingerprint(model, {path!r})
t2 = time.perf_counter()
model = model.to({device!r})
if {device!r}.startswith("cuda"):
    torch.cuda.synchronize()
t3 = time.perf_counter()
print(json.dumps({{"build": t1 - t0, "fingerprint": t2 - t1, "to_device": t3 - t2,
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}))
"""



def build_once(name: str, path: Path, meta: bool, device: str, home: Path) -> dict:
    code = CHILD.format(repo=str(REPO_ROOT), name=name, path=str(path), meta=meta, device=device)
    env = {**os.environ, "BENCH_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="s,g", help="DinoBloom sizes, comma-separated (s, b, l, g)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--folder", type=Path, help="where to write the weight files (default: a temporary folder)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    info = machine_info()
    lines = ["# Model build: initialising vs meta device", "",
             f"{info['cpu']}, {info['cpus_usable']} usable CPUs, {info['memory']}, torch {info['torch']}, "
             f"timm {info['timm']}, device {args.device}", "",
             "| model | file GiB | path | file sha256 | build s | fingerprint s | to device s | total s "
             "| peak RSS GiB |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        for size in args.sizes.split(","):
            path = write_dinobloom(size, Path(tmp) / f"DinoBloom-{size.upper()}.pth")
            gib = path.stat().st_size / 2**30
            for meta, label in ((False, "initialise, copy"), (True, "meta device, assign")):
                home = Path(tempfile.mkdtemp(dir=tmp))
                for hashed in ("computed", "remembered"):
                    t = build_once(f"dinobloom-{size}", path, meta, args.device, home)
                    total = t["build"] + t["fingerprint"] + t["to_device"]
                    lines.append(f"| dinobloom-{size} | {gib:.2f} | {label} | {hashed} | {t['build']:.2f} | "
                                 f"{t['fingerprint']:.2f} | {t['to_device']:.2f} | {total:.2f} | "
                                 f"{t['peak_rss_gib']:.2f} |")
                    print(lines[-1], flush=True)
            path.unlink()
    return emit_report(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
