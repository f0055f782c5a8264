"""``torchrun --nproc_per_node N -m dinobloom_train --preset s --data DIR --out DIR [--set key=value ...]``.

The same run as ``bench train`` without the per-export evaluation (evaluate exports afterwards with
``bench run --extractor trained:<export>``); every rank trains on its slice of each global batch.
"""

import argparse

from dinobloom_train.train import main_cli


def main(argv=None) -> None:
    description = __doc__.splitlines()[0] if __doc__ else None  # (python -OO drops docstrings)
    parser = argparse.ArgumentParser(prog="python -m dinobloom_train", description=description)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--data", required=True, help="image folder, or a folder of .txt image lists")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    main_cli(args.preset, args.data, args.out, args.overrides, args.max_steps)


if __name__ == "__main__":
    main()
