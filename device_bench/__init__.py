"""What runs on the device (``runner.py``, pushed alone) and the measurement protocol.

Host-side API::

    from device_bench import Protocol, measure_host, measure_many_host, parse_benchmark_output

``runner.py`` is a standalone script, never imported here.
"""

from device_bench.parse import BenchmarkParseError, BenchmarkResult, parse_benchmark_output, parse_many
from device_bench.protocol import (
    RUNNER_PATH,
    RUNNER_VERSION,
    Measurement,
    Protocol,
    RunnerError,
    combine_passes,
    host_fingerprint,
    measure_host,
    measure_many_host,
)

__all__ = [
    "RUNNER_PATH",
    "RUNNER_VERSION",
    "BenchmarkParseError",
    "BenchmarkResult",
    "Measurement",
    "Protocol",
    "RunnerError",
    "combine_passes",
    "host_fingerprint",
    "measure_host",
    "measure_many_host",
    "parse_benchmark_output",
    "parse_many",
]
