"""Property-based suite (hypothesis): each public entry point driven with generated valid and invalid input.
Every outcome must be a valid result or a clear kexue error; each test is bounded in time (pytest-timeout),
and the examples are derandomized so a run is the same on every machine."""
from hypothesis import HealthCheck, settings

settings.register_profile("kexue", derandomize=True, deadline=None, max_examples=60, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile("kexue")
