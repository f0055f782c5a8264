"""hemabench: the benchmark harness for image feature extractors in hematology.

Importing it changes nothing in the process: the ``bench`` command switches on scipy's array API for the linear
probe's GPU path itself (:func:`bench.core.settings.use_scipy_array_api`)."""
