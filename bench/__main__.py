"""``python -m bench ...``: the ``bench`` command, also as torchrun starts it (``torchrun --nproc-per-node N -m bench
run ...``, docs/distributed.md)."""

from bench.cli import app

if __name__ == "__main__":
    app(prog_name="bench")
