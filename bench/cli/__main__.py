"""``python -m bench.cli ...``: the ``bench`` command."""

from bench.cli import app

if __name__ == "__main__":  # pragma: no cover
    app()
