"""Casegate side by side with a bare pass-through, the stub and LiteLLM's proxy.

    python -m bench.compare [--setup] [--quick] [--profile]

See ``bench/README.md``. Modules: ``run`` (orchestrator), ``targets`` (what is launched
and sent), ``litellm_proxy`` (its venv, config and command line), ``otlp_sink`` (the
OTLP/HTTP receiver that discards), ``report`` (tables, targets, chart).
"""
