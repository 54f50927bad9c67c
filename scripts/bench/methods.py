"""Certification time per input of several methods, side by side (IDRS Table 1, DSmooth Tables 1/3/5).

Reads a certify run dir (its saved config and fingerprint give the dataset, the base model and the method,
including the method's artefacts: IDRS sigma network, DSmooth covariance) and times that method next to
each --compare method on the same test points, interleaved point by point so machine noise hits every
method alike, exactly as `rsbench certify` runs them (same PointSampler, pushforward sampler where it
applies). Repeats --repeats times; prints the median ms per input, the min-max spread and the paired ratio to
the first --compare method (median of the repeats' ratios). Writes <out>/<name>.csv and .md.

    python scripts/bench methods <idrs run> --compare name=gaussian,smoothing=soft,p_min=1e-7,sigma=0.25 ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch
import yaml
from omegaconf import OmegaConf

from bench.harness import ratio, seconds, spread
from rsbench.analysis.curves import to_markdown
from rsbench.certify.pushforward import LinearPushforward
from rsbench.certify.sampling import PointSampler
from rsbench.methods import make_method
from rsbench.methods.base import MethodContext
from rsbench.models.checkpoint import load_model
from rsbench.models.registry import prefers_channels_last
from rsbench.noise.base import ScaledGaussian
from rsbench.runtime import tune_allocator
from rsbench.stages.common import dataset_split, model_choice, plain, select_device
from rsbench.stages.points import fastest_batch

ARTEFACT_PARAMS = {"idrs": "sigma_net", "dsmooth": "covariance"}


def _value(text: str) -> object:
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return yaml.safe_load(text)


def _spec(text: str) -> dict:
    """'name=gaussian,sigma=0.25' -> {'name': 'gaussian', 'sigma': 0.25}."""
    return {k: _value(v) for k, v in (item.split("=", 1) for item in text.split(","))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python scripts/bench methods", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a certify run dir (holds certify.fingerprint.json and .hydra/config.yaml)")
    ap.add_argument("--compare", nargs="+", required=True, help="methods as key=value,... (the first is the ratio's "
                    "reference)")
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="outputs/bench")
    ap.add_argument("--name", default="method_timing")
    args = ap.parse_args(argv)
    tune_allocator()  # as every rsbench stage does (rsbench/runtime.py)
    run = Path(args.run)
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    fp = json.loads((run / "certify.fingerprint.json").read_text())
    device = select_device(str(cfg.device))
    test_ds, spec = dataset_split(cfg, "test")
    arch, params = model_choice(cfg)
    model, meta = load_model(fp["model"]["checkpoint"], arch, params, spec)
    model = model.to(device).eval()
    own = plain(cfg.method)
    if own["name"] in ARTEFACT_PARAMS:
        key = ARTEFACT_PARAMS[own["name"]]
        own[key] = fp["artefacts"][key]
    specs = [own, *(_spec(s) for s in args.compare)]
    methods = {}
    for s in specs:
        method = make_method(s)
        if hasattr(method, "prepare"):
            method.prepare(MethodContext(int(cfg.seed), str(cfg.outputs_dir), model, meta, spec, device, lambda: None))
        methods[method.label()] = method
    pf = LinearPushforward(model) if LinearPushforward.applies(model) else None
    channels_last = prefers_channels_last(model, spec.shape)  # the same settings `rsbench certify` picks
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    batch = fastest_batch(model, spec, device, channels_last)
    n0, n, alpha = int(cfg.certify.n0), int(cfg.certify.n), float(cfg.certify.alpha)
    indices = list(range(0, len(test_ds), max(1, len(test_ds) // args.points)))[:args.points]
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        total = dict.fromkeys(methods, 0.0)
        for i in indices:
            x = test_ds[i][0].to(device)
            for name, method in methods.items():
                sampler = PointSampler(model, method.noise, x, i, spec.num_classes, batch, 0,
                                       pf if isinstance(method.noise, ScaledGaussian) else None, channels_last)
                total[name] += seconds(lambda m=method, s=sampler: m.certify(s, n0, n, alpha), device)
        for name in methods:
            times[name].append(1000 * total[name] / len(indices))
    ref = times[list(methods)[1]]
    df = pd.DataFrame([{"method": name, "ms_per_input": spread(t).median, "min": min(t), "max": max(t),
                        "ratio": ratio(t, ref).median, "ratio_spread": ratio(t, ref).range(".3f")}
                       for name, t in times.items()])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"{args.name}.csv", index=False)
    (out / f"{args.name}.md").write_text(to_markdown(df.set_index("method")))
    print(f"{len(indices)} test points of {spec.name}, {arch}, n0 = {n0}, n = {n}, {args.repeats} interleaved "
          f"repeats, {device}, batch {batch}; ratio = time / time of {list(methods)[1]}")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
