"""Decoding on the device (``bench.decode``, ``--decode gpu``) against the PIL path: how close, and how fast.

    BENCH_HOME=$(mktemp -d) python benchmarks/bench_decode.py [--quick] [--out report.md]

Fidelity: on real PBC JPEGs, the model input of the PIL path (``bench.extract.ImageFiles``: ``decode_rgb`` + the
entry's ``Resize``/``ToTensor``/``Normalize``) against ``bench.decode.decode_batch`` on the CPU (libjpeg-turbo and
the same float32 resize math the GPU runs) and against the resize variants it was chosen from; on CUDA also
against ``decode_batch`` with nvJPEG. Throughput: the PIL path in one process (what one DataLoader worker does),
the worker's share of the device path (reading bytes), and ``decode_batch`` on the CPU and, when present, on CUDA
(nvJPEG, batch 256).
"""

from __future__ import annotations

import sys
from pathlib import Path

from measure import PBC_DEFAULT, CpuMeter, fmt, log, md_table, parser, run_benchmark, wait_quiet

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def pbc_paths(root: Path, n: int) -> list[Path]:
    """``n`` images spread evenly over the sorted files of every class folder."""
    files = sorted(p for class_dir in sorted(root.iterdir()) if class_dir.is_dir() for p in class_dir.glob("*.jpg"))
    step = max(1, len(files) // n)
    return files[::step][:n]


def entry_for(interpolation: str, size: int):
    from extractors.base import ExtractorEntry

    return ExtractorEntry(name="bench-decode", family="bench", architecture="none", dim=1,
                          build_fn=lambda e: None, input_size=size, interpolation=interpolation)


def pil_reference(paths: list[Path], entry):
    """The PIL path's model input, image by image (what ImageFiles yields)."""
    from bench.core.images import decode_rgb

    transform = entry.transform()
    return [transform(decode_rgb(p)) for p in paths]


def resize_variants(interpolation: str):
    """name -> (uint8 (3, H, W) pixels, size) -> float levels (3, size, size): the alternatives to
    ``bench.decode.resize_levels`` (float, in PIL's pass order, each pass rounded half up; PIL's nearest indices)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    if interpolation == "nearest":
        def torch_nearest_exact(u8, size):
            return TF.resize(u8[None].float(), [size, size], interpolation=InterpolationMode.NEAREST_EXACT)[0]

        return {"torch nearest-exact, float": torch_nearest_exact}

    mode = getattr(InterpolationMode, interpolation.upper())

    def resize(x, shape):
        return TF.resize(x, list(shape), interpolation=mode, antialias=True)

    def one_pass(u8, size):
        return resize(u8[None].float(), (size, size))[0]

    def one_pass_rounded(u8, size):
        return resize(u8[None].float(), (size, size))[0].round().clamp(0, 255)

    def two_pass_width_first(u8, size):
        x = resize(u8[None].float(), (u8.shape[1], size)).round().clamp(0, 255)
        return resize(x, (size, size))[0].round().clamp(0, 255)

    def uint8_kernel(u8, size):
        return resize(u8[None], (size, size))[0].float()

    return {
        "float, one pass, not rounded": one_pass,
        "float, one pass, rounded at the end": one_pass_rounded,
        "float, width then height, each pass rounded half to even": two_pass_width_first,
        "uint8 kernel (CPU only)": uint8_kernel,
    }


def compare(got: list, expected: list, level: float) -> dict:
    import torch

    diff = torch.stack([(g.cpu() - e).abs() for g, e in zip(got, expected)])
    return {"max": float(diff.max()), "mean": float(diff.mean()), "levels": float(diff.max()) / level,
            "share": float((diff > 1e-4).float().mean())}


def fidelity(paths: list[Path], size: int, cuda: bool) -> list[dict]:
    """Rows: per interpolation and variant, the difference to the PIL path after normalisation."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    from bench.decode import normalise

    pixels = decode_jpeg([read_file(str(p)) for p in paths], mode=ImageReadMode.RGB)
    rows = []
    for interpolation in INTERPOLATIONS:
        entry = entry_for(interpolation, size)
        level = 1 / (255 * min(entry.std))
        log(f"fidelity, {interpolation}: PIL path on {len(paths)} images")
        expected = pil_reference(paths, entry)
        got = device_inputs(paths, entry, torch.device("cpu"))
        rows.append({"interpolation": interpolation, "variant": "bench.decode.decode_batch on CPU (the GPU's math)",
                     **compare(list(got), expected, level)})
        for name, variant in resize_variants(interpolation).items():
            got = [normalise(variant(u8, size), entry.mean, entry.std) for u8 in pixels]
            rows.append({"interpolation": interpolation, "variant": name, **compare(got, expected, level)})
        if cuda:
            got = device_inputs(paths, entry, torch.device("cuda"))
            rows.append({"interpolation": interpolation, "variant": "bench.decode on CUDA (nvJPEG + GPU resize)",
                         **compare(list(got), expected, level)})
    return rows


def decode_differences(paths: list[Path], cuda: bool) -> dict:
    """Pixels (levels) of torchvision's JPEG decoders against PIL's, before any resize: name -> (max, mean)."""
    import numpy as np
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    from bench.core.images import decode_rgb

    pil = [torch.from_numpy(np.array(decode_rgb(p))).permute(2, 0, 1).float() for p in paths]
    data = [read_file(str(p)) for p in paths]
    devices = {"libjpeg-turbo (torchvision, CPU)": "cpu"} | ({"nvJPEG (torchvision, CUDA)": "cuda"} if cuda else {})
    out = {}
    for name, device in devices.items():
        decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        diffs = [(d.cpu().float() - ref).abs() for d, ref in zip(decoded, pil)]
        out[name] = (max(float(d.max()) for d in diffs), float(torch.cat([d.ravel() for d in diffs]).mean()))
    return out


def device_inputs(paths: list[Path], entry, device, batch_size: int = 256):
    """decode_batch over ``paths`` in batches (files read in this process)."""
    import torch

    from bench.decode import decode_batch, encode_file

    out = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images, _ = decode_batch([encode_file(p) for p in chunk], chunk, device=device, size=entry.input_size,
                                 interpolation=entry.interpolation, mean=entry.mean, std=entry.std)
        out.append(images)
    return torch.cat(out)


def timed(fn, repeats: int, cuda: bool = False) -> dict:
    """Best of ``repeats`` wall times of ``fn()`` (CUDA synchronised), each after a quiet wait."""
    import torch

    best = None
    for _ in range(repeats):
        wait_quiet()
        with CpuMeter() as meter:
            fn()
            if cuda:
                torch.cuda.synchronize()
        if best is None or meter.wall < best["wall_s"]:
            best = {"wall_s": meter.wall, "foreign_cpu_s": meter.foreign}
    return best


def throughput(paths: list[Path], size: int, batch_size: int, repeats: int, cuda: bool) -> list[dict]:
    """Rows: img/s of the PIL path, the workers' read, and decode_batch on CPU and CUDA."""
    import torch

    from bench.core.images import decode_rgb
    from bench.decode import decode_batch, decode_jpegs, encode_file

    entry = entry_for("bilinear", size)
    transform = entry.transform()
    encoded = [encode_file(p) for p in paths]
    batches = [(encoded[i : i + batch_size], paths[i : i + batch_size]) for i in range(0, len(paths), batch_size)]

    def run_batches(device):
        for data, names in batches:
            decode_batch(data, names, device=device, size=size, interpolation="bilinear", mean=entry.mean,
                         std=entry.std)

    passes = [
        ("PIL path: decode_rgb + transform, one process", "cpu", lambda: [transform(decode_rgb(p)) for p in paths]),
        ("workers' share: EncodedFiles item (read bytes, check header)", "cpu",
         lambda: [encode_file(p) for p in paths]),
        ("decode_batch on CPU (libjpeg-turbo + float resize)", "cpu", lambda: run_batches(torch.device("cpu"))),
    ]
    if cuda:
        gpu = torch.device("cuda")
        run_batches(gpu)  # warm-up: nvJPEG handles, CUDA kernels
        passes += [
            ("decode_batch on CUDA (nvJPEG + GPU resize)", "cuda", lambda: run_batches(gpu)),
            ("  of which nvJPEG decode alone", "cuda", lambda: [decode_jpegs(d, gpu) for d, _ in batches]),
        ]
    rows = []
    for label, device, fn in passes:
        log(f"throughput: {label}")
        result = timed(fn, repeats, cuda=device == "cuda")
        rows.append({"path": label, "device": device, "images": len(paths), **result,
                     "ips": len(paths) / result["wall_s"]})
    return rows


def measure(args) -> dict:
    import torch

    root = Path(args.pbc_root)
    if not root.is_dir():
        raise SystemExit(f"real images not found at {root}; pass --pbc-root")
    cuda = torch.cuda.is_available() and args.device != "cpu"
    fid_paths = pbc_paths(root, args.images)
    thr_paths = pbc_paths(root, args.throughput_images)
    out = {"root": str(root), "cuda": cuda, "threads": torch.get_num_threads(),
           "gpu": torch.cuda.get_device_name() if cuda else None, "n_fidelity": len(fid_paths)}
    out["decode"] = decode_differences(fid_paths, cuda)
    out["fidelity"] = fidelity(fid_paths, args.size, cuda)
    out["throughput"] = throughput(thr_paths, args.size, args.batch_size, args.repeats, cuda)
    return out


def report(p: dict, args) -> str:
    level = 1 / (255 * 0.224)
    fid_rows = [[r["interpolation"], r["variant"], f"{r['max']:.4f}", f"{r['levels']:.2f}", f"{r['mean']:.2e}",
                 f"{100 * r['share']:.3f}%"] for r in p["fidelity"]]
    thr_rows = [[r["path"], r["device"], r["images"], f"{r['wall_s']:.2f}", fmt(r["ips"]), f"{r['foreign_cpu_s']:.1f}"]
                for r in p["throughput"]]
    dec_rows = [[name, f"{mx:.0f}", f"{mean:.4f}"] for name, (mx, mean) in p["decode"].items()]
    device = f"CUDA ({p['gpu']})" if p["cuda"] else "no CUDA device: CPU rows only"
    return "\n".join([
        "## Fidelity: the device path's model input against the PIL path",
        "",
        (f"{p['n_fidelity']} PBC JPEGs from `{p['root']}` (spread over the 8 classes); {device}. First the decoded "
         "pixels against PIL's (levels 0..255, before any resize):"),
        "",
        md_table(["decoder", "max abs diff (levels)", "mean abs diff (levels)"], dec_rows),
        "",
        (f"Then the model input, resized to {args.size}x{args.size} and normalised with ImageNet's mean/std, against "
         "the PIL path (`ImageFiles`). The variant rows resize libjpeg-turbo's pixels (PIL's, when the table above "
         f"says 0) another way. One 8-bit level is 1/(255 * 0.224) = {level:.4f} after normalisation; `values "
         "differing`: the share of values that differ by more than 1e-4."),
        "",
        md_table(["interpolation", "variant", "max abs diff", "max (levels)", "mean abs diff", "values differing"],
                 fid_rows),
        "",
        "## Throughput",
        "",
        (f"Batch {args.batch_size}, bilinear to {args.size}x{args.size}, best of {args.repeats}; torch threads "
         f"{p['threads']}. Files are read before the decode_batch rows are timed (the workers do that; their share "
         "is its own row). The PIL path and the read run in this one process: with DataLoader workers they scale "
         "with the cores."),
        "",
        md_table(["path", "device", "images", "seconds", "img/s", "other processes' CPU s"], thr_rows),
    ])


def main(argv=None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--pbc-root", default=str(PBC_DEFAULT), help="real images <root>/<class>/<image>.jpg")
    p.add_argument("--images", type=int, default=400, help="images for the fidelity table")
    p.add_argument("--throughput-images", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", choices=("auto", "cpu"), default="auto", help="cpu: skip the CUDA rows")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.throughput_images, args.repeats = 32, 64, 1
    return run_benchmark(args, "hemabench GPU decoding: fidelity and throughput", "bench_decode.py",
                         lambda home, scratch: [report(measure(args), args)])


if __name__ == "__main__":
    sys.exit(main())
