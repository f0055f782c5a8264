"""hemabench: the benchmark harness for image feature extractors in hematology."""

import os
import sys

# scikit-learn runs the linear probe on a GPU through its array-API dispatch, which needs scipy's array-API
# support, and scipy reads this switch once, at its first import (so it cannot be turned on later, when a CUDA
# evaluation starts). Numpy inputs behave as before. Set only where scipy is not imported yet, so that the
# variable never claims what scipy did not do; SCIPY_ARRAY_API=0 in the environment keeps it off.
if "scipy" not in sys.modules:
    os.environ.setdefault("SCIPY_ARRAY_API", "1")
