"""IDRS paper, Table 1: average certification time per input, IDRS vs standard (soft) RS, side by side.

Reads an IDRS certify run dir (its fingerprint names the base model and the sigma network), then
certifies the same test points with IDRS and with soft Gaussian RS at each --sigmas value, interleaved
point by point (so machine noise hits every method alike), exactly as `rsbench certify` does (same
PointSampler, pushforward sampler, batch size). Repeats the sweep --repeats times and prints the median
ms/point, the min-max spread and the ratio to standard RS at the first sigma. Writes
outputs/bench/idrs_timing.csv and .md.

    python scripts/idrs_timing.py outputs/figures/quick/idrs/idrs/<run with bounds=bernstein>
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from rsbench.analysis.curves import to_markdown
from rsbench.certify.pushforward import LinearPushforward
from rsbench.certify.sampling import PointSampler
from rsbench.methods import make_method
from rsbench.methods.base import MethodContext
from rsbench.models.checkpoint import load_model
from rsbench.stages.common import dataset_split, model_choice, plain, select_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="an IDRS certify run dir (holds certify.fingerprint.json and .hydra/config.yaml)")
    ap.add_argument("--sigmas", default="0.25,0.5,1.0")
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="outputs/bench")
    args = ap.parse_args()
    run = Path(args.run)
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    fp = json.loads((run / "certify.fingerprint.json").read_text())
    device = select_device(str(cfg.device))
    test_ds, spec = dataset_split(cfg, "test")
    arch, params = model_choice(cfg)
    model, meta = load_model(fp["model"]["checkpoint"], arch, params, spec)
    model = model.to(device).eval()
    methods = {"IDRS": make_method({**plain(cfg.method), "sigma_net": fp["artefacts"]["sigma_net"]})}
    methods["IDRS"].prepare(MethodContext(cfg, model, meta, spec, device, lambda: None))
    for s in args.sigmas.split(","):
        methods[f"standard RS σ={float(s):g}"] = make_method(
            {"name": "gaussian", "sigma": float(s), "smoothing": "soft", "bounds": methods["IDRS"].bounds,
             "p_min": methods["IDRS"].p_min})
    pf = LinearPushforward(model) if LinearPushforward.applies(model) else None
    n0, n, alpha, batch = int(cfg.certify.n0), int(cfg.certify.n), float(cfg.certify.alpha), 1600
    indices = list(range(0, len(test_ds), max(1, len(test_ds) // args.points)))[:args.points]
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        total = dict.fromkeys(methods, 0.0)
        for i in indices:
            x = test_ds[i][0].to(device)
            for name, method in methods.items():
                t0 = time.perf_counter()
                method.certify(PointSampler(model, method.noise, x, i, spec.num_classes, batch, 0, pf), n0, n, alpha)
                total[name] += time.perf_counter() - t0
        for name in methods:
            times[name].append(1000 * total[name] / len(indices))
    ref = statistics.median(times[next(k for k in methods if k != "IDRS")])
    rows = [{"method": name, "ms_per_input": statistics.median(t), "min": min(t), "max": max(t),
             "ratio_to_standard_rs": statistics.median(t) / ref} for name, t in times.items()]
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "idrs_timing.csv", index=False)
    (out / "idrs_timing.md").write_text(to_markdown(df.set_index("method")))
    print(f"{len(indices)} MNIST test points, n0 = {n0}, n = {n}, {args.repeats} interleaved repeats, {device}")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
