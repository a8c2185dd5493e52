"""Command lines: train, evaluate, predict (local and Ray), the benchmarks, the memory check and the demo-sample maker.
`python -m core.train|evaluate|predict|bench` reach them through thin modules at `core/`."""
