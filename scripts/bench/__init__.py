"""rsbench's benchmarks: one entry point (``python scripts/bench <measurement>``), one shared harness
(``bench.harness``: interleaved arms, paired ratios, synchronised rates, fresh processes, tables)."""

COMMANDS: dict[str, tuple[str, str]] = {  # measurement -> (module, what it measures)
    "certify": ("certify_throughput", "CERTIFY's throughput next to each model's raw forward throughput"),
    "train": ("train_throughput", "a training epoch's throughput next to the bare training step"),
    "allocator": ("allocator", "fresh-process forward throughput, glibc's allocator thresholds vs rsbench's"),
    "multipoint": ("multipoint", "several test points per forward batch: each way of pooling vs one at a time"),
    "precision": ("precision", "raw forward throughput by batch size at fp32, bf16 and fp16 (CUDA)"),
    "host": ("host", "per-point host work of CERTIFY, this tree vs an earlier commit (fresh processes)"),
    "sampler": ("sampler", "certify throughput of the sampler now vs an earlier commit's, in one process"),
    "profile": ("profile_point", "where one point's time goes: ms per point and a cProfile of CERTIFY"),
    "methods": ("methods", "certification time per input of several methods on the same points"),
    "sequential": ("sequential", "a sequential certify run vs a fixed-n run: evaluations and paired accuracy"),
    "columns": ("columns", "per-run mean / median / min / max of certify.csv columns"),
}
