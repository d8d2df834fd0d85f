"""Test support for edgeeas: doubles the tests and benchmarks run against, not part of the product.

Not installed with the wheel (``setup.cfg`` packages only ``edgeeas``, ``device_bench`` and
``android_runner``); importable from the repository root (pytest's ``pythonpath = .``, the
benchmarks put the root on ``sys.path``).

* :mod:`testing.adb_peer`: a device-side adb peer (adbd's wire protocol over TCP).
* :mod:`testing.tiny_model`: real, tiny int8/float32 ``.tflite`` models, cached on disk.
"""
