"""Gateway benchmark: upstream stub, bare pass-through and Casegate under the same load.

    python -m bench.gateway [--quick] [--reps N] [--profile]

See ``bench/README.md``. Modules: ``run`` (orchestrator), ``load`` (the load-generator
process), ``passthrough`` (the bare Starlette + uvicorn + aiohttp baseline), ``workload``
(the request bodies), ``procstat`` (CPU and RSS from /proc).
"""
