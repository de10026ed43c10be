"""The language-model study: ES ablations at equal compute, ES against backprop, and the int8 model.

    python -m benchmarks.lm_study                       # every row at the study's budget (resumes)
    python -m benchmarks.lm_study --only ref,T25        # some rows
    python -m benchmarks.lm_study --scale 0.5 --jobs 2  # half the budget, two rows at a time
    python -m benchmarks.lm_study --small               # the test suite's tiny setting

**Equal compute.** Every ES row gets the same budget of *member-bytes* (bytes through the
perturbed model: P·T per epoch), ``--scale`` × 240 · 1024 · 100 (the budget of the 240-epoch
defaults the study started from), so a row with twice the population runs half the epochs. Width, depth and
cell change the cost of a member-byte, so the table gives each row's CPU seconds too. Backprop
rows read the same bytes as the reference ES row (``equal data``: the same epochs, S = P/g streams
per step) or run for the reference row's CPU time (``equal CPU``).

**Full length.** The rows of the groups "at the defaults" and "full length" run today's defaults
(``npegg train`` with no flags) for their own epochs, ``--scale`` aside: ``es-full`` as they are,
each ``full-*`` row with one of their choices undone (its Δ is against ``es-full``), and backprop
and the int8 model at the same budget.

Each row runs in its own process (its peak RSS is its own) and is appended to the results file
(JSON lines) the moment it finishes; a rerun skips rows already there, so an interrupted study
resumes. The markdown table (``--table``) is rewritten from the results file after every row.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "lm_study.jsonl"
TABLE = HERE / "lm_study.md"
BUDGET = 240 * 1024 * 100                  # member-bytes at --scale 1

#: (group, name, what it tests, TrainConfig overrides; "init" and "bp_time" are handled here)
ROWS = [
    ("reference", "ref", "P=1024, g=8, T=100, rank 1, z-scores, σ 0.03, Adam lr 0.03 cosine, D=64, L=2, minGRU", {}),
    ("population vs epochs", "P256", "P=256 (4× the epochs)", {"pop_size": 256}),
    ("population vs epochs", "P4096", "P=4096 (¼ of the epochs)", {"pop_size": 4096}),
    ("rank", "rank4", "rank 4", {"rank": 4}),
    ("group size", "g2", "g=2 (antithetic pairs only)", {"group_size": 2}),
    ("group size", "g64", "g=64", {"group_size": 64}),
    ("fitness shaping", "ranks", "centered ranks over the population", {"fitness": "centered_ranks"}),
    ("fitness shaping", "pairsign", "sign of each antithetic pair", {"fitness": "pair_sign"}),
    ("noise reuse", "reuse0", "noise_reuse 0 (the same noise every epoch)", {"noise_reuse": 0}),
    ("noise reuse", "reuse4", "noise_reuse 4", {"noise_reuse": 4}),
    ("σ", "sigma0.01", "σ 0.01", {"sigma": 0.01}),
    ("σ", "sigma0.1", "σ 0.1", {"sigma": 0.1}),
    ("σ", "sigmacos", "σ 0.03 cosine decay", {"sigma_schedule": "cosine"}),
    ("lr", "lr0.01", "lr 0.01 cosine", {"lr": 0.01}),
    ("lr", "lr0.1", "lr 0.1 cosine", {"lr": 0.1}),
    ("lr", "lrconst", "lr 0.03 constant", {"lr_schedule": "constant"}),
    ("tokens per member", "T25", "T=25 (4× the epochs)", {"tokens_per_update": 25}),
    ("tokens per member", "T400", "T=400 (¼ of the epochs)", {"tokens_per_update": 400}),
    ("tokens per member", "T10", "T=10 (10× the epochs)", {"tokens_per_update": 10}),
    ("width/depth", "D32L1", "D=32, L=1", {"hidden_dim": 32, "n_layers": 1}),
    ("width/depth", "D64L1", "D=64, L=1", {"hidden_dim": 64, "n_layers": 1}),
    ("width/depth", "D128L1", "D=128, L=1", {"hidden_dim": 128, "n_layers": 1}),
    ("cell", "egg", "egg cell (recurrent matrices)", {"cell": "egg"}),
    ("init/architecture", "head0", "head initialised to 0 (uniform predictions at the start)", {"head_scale": 0.0}),
    ("init/architecture", "direct", "branches initialised to 0: the model starts as emb → LN → head",
     {"init": "direct"}),
    ("backprop", "bp-data", "backprop, equal data (the reference row's bytes), lr 0.01", {"method": "backprop",
                                                                                          "lr": 0.01}),
    ("backprop", "bp-cpu", "backprop, equal CPU time to the reference row, lr 0.01",
     {"method": "backprop", "lr": 0.01, "bp_time": "ref"}),
    ("int8", "int", "int8 EGG + Q-EGGROLL, D=64, L=2, σ shift 4, α 4", {"mode": "int", "cell": "egg"}),
    ("int8", "int-s2", "int8, σ shift 2", {"mode": "int", "cell": "egg", "sigma_shift": 2}),
    ("int8", "int-s6", "int8, σ shift 6", {"mode": "int", "cell": "egg", "sigma_shift": 6}),
    ("int8", "int-a1", "int8, α 1", {"mode": "int", "cell": "egg", "alpha": 1.0}),
    ("int8", "int-a16", "int8, α 16", {"mode": "int", "cell": "egg", "alpha": 16.0}),
]
#: the defaults before this study: every ablation row changes one thing from here
BASE = dict(mode="float", method="es", cell="mingru", hidden_dim=64, n_layers=2, pop_size=1024, group_size=8,
            tokens_per_update=100, rank=1, sigma=0.03, lr=0.03, optimizer="adam", lr_schedule="cosine",
            sigma_schedule="constant", noise_reuse=1, fitness="zscore", head_scale=1.0)
#: rows at the new defaults (``npegg train`` with no flags, its own epochs; --scale does not apply)
AT_DEFAULTS = [
    ("at the defaults", "es-full", "ES, the defaults (npegg train with no flags)", {"defaults": True}),
    ("full length", "full-lr03", "lr 0.03", {"defaults": True, "lr": 0.03}),
    ("full length", "full-nodirect", "no direct path", {"defaults": True, "direct_path": False}),
    ("full length", "full-allrows", "every embedding row in every member's term (--embedding-update all)",
     {"defaults": True, "embedding_update": "all"}),
    ("full length", "full-mlp4", "an MLP D → 4D → D in each layer", {"defaults": True, "mlp_ratio": 4}),
    ("full length", "full-old", "the model and lr before this study: D=64, MLP 4D, no direct path, all rows, lr 0.03",
     {"defaults": True, "hidden_dim": 64, "mlp_ratio": 4, "direct_path": False, "embedding_update": "all",
      "lr": 0.03}),
    ("at the defaults", "bp-full-data", "backprop, equal data: the defaults' bytes, lr 0.01",
     {"defaults": True, "method": "backprop", "lr": 0.01}),
    ("at the defaults", "bp-full-cpu", "backprop, the CPU time of es-full, lr 0.01",
     {"defaults": True, "method": "backprop", "lr": 0.01, "bp_time": "es-full"}),
    ("at the defaults", "int-full", "int8 EGG + Q-EGGROLL at the defaults' budget", {"defaults": True, "mode": "int",
                                                                                      "cell": "egg"}),
]
ROWS = ROWS + AT_DEFAULTS
SMALL = dict(hidden_dim=16, n_layers=1, pop_size=64, group_size=4, tokens_per_update=20, max_docs=60,
             eval_lanes=8, eval_warmup=16, sample_bytes=0)
SMALL_BUDGET = 8 * 64 * 20
SMALL_EPOCHS = 8


def row_config(overrides: dict, scale: float, small: bool, ref_epochs: int | None = None):
    """The TrainConfig of a row, its epochs set by the member-byte budget (module docstring)."""
    from npegg.program.config import TrainConfig
    over = {k: v for k, v in overrides.items() if k not in ("init", "bp_time", "defaults")}
    if overrides.get("defaults"):               # the new defaults as they are, their own epochs
        cfg = replace(TrainConfig(), **{"sample_bytes": 0, **(SMALL if small else {})}, **over)
        return replace(cfg, epochs=SMALL_EPOCHS if small else cfg.epochs,
                       eval_every=SMALL_EPOCHS if small else cfg.epochs)
    cfg = replace(TrainConfig(), **{**BASE, "sample_bytes": 0, **(SMALL if small else {})})
    cfg = replace(cfg, **over)
    budget = (SMALL_BUDGET if small else BUDGET) * scale
    if cfg.method == "backprop":
        base = replace(cfg, method="es")
        epochs = ref_epochs or max(1, round(budget / (base.pop_size * base.tokens_per_update)))
    else:
        epochs = max(1, round(budget / (cfg.pop_size * cfg.tokens_per_update)))
    return replace(cfg, epochs=int(epochs), eval_every=int(epochs))


def direct_init(run) -> None:
    """Zero the residual branches' last weights (cell candidate W_h and MLP W₁): logits = head·LN(emb)."""
    p = run.state.params["blocks"]
    p["att"]["Wh"] = p["att"]["Wh"] * 0
    p["mlp"]["1"]["weight"] = p["mlp"]["1"]["weight"] * 0


def run_row(name: str, scale: float, small: bool, bp_cpu: float | None) -> dict:
    """Train one row in this process; → its result record."""
    import resource

    from npegg.program.blas import default_blas_threads
    from npegg.program.data import load_corpus
    from npegg.program.runs import make_run
    from npegg.program.runs.backprop_run import data_bytes_per_epoch, member_bytes_per_epoch
    default_blas_threads()
    group, _, what, overrides = next(r for r in ROWS if r[1] == name)
    cfg = row_config(overrides, scale, small)
    corpus = load_corpus(cfg.data, max_docs=cfg.max_docs, valid_fraction=cfg.valid_fraction)
    if bp_cpu is not None:                     # equal CPU: time a few steps, then size the run
        probe = make_run(replace(cfg, epochs=3), corpus)
        t0 = time.process_time()
        for _ in range(3):
            probe.epoch_step()
        cfg = replace(cfg, epochs=max(1, round(bp_cpu / ((time.process_time() - t0) / 3))))
        cfg = replace(cfg, eval_every=cfg.epochs)
    cfg.validate()
    run = make_run(cfg, corpus)
    if overrides.get("init") == "direct":
        direct_init(run)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    train = float("nan")
    for _ in range(cfg.epochs):
        train = run.epoch_step()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    valid = run.valid_bpb()
    return {"name": name, "group": group, "what": what, "scale": "defaults" if overrides.get("defaults") else scale,
            "small": small,
            "config": asdict(cfg), "epochs": cfg.epochs, "train_bpb": train, "valid_bpb": valid,
            "cpu_s": cpu, "wall_s": wall, "data_bytes": data_bytes_per_epoch(cfg) * cfg.epochs,
            "member_bytes": member_bytes_per_epoch(cfg) * cfg.epochs,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def load_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


VS_GROUPS = ("backprop", "int8", "at the defaults")
FULL_GROUP = "full length"


def tables(results: list[dict], scale: float, small: bool) -> tuple[str, str, str]:
    """(ablation table, ES-vs-backprop-vs-int8 table, full-length table) in markdown, rows in
    ``ROWS`` order.

    The ablations give Δ against ``ref``; the second table puts ES (``ref``, ``T25``, ``es-full``),
    backprop and the int8 model side by side with their bytes of data, CPU and wall time and peak
    RSS; the third gives the defaults (``es-full``) and each full-length row with one thing changed
    back, Δ against ``es-full``.
    """
    mine = {r["name"]: r for r in results if r["scale"] in (scale, "defaults") and r["small"] == small}
    ref = mine.get("ref", {}).get("valid_bpb")
    full_ref = mine.get("es-full", {}).get("valid_bpb")
    ab = ["| group | row | setting | epochs | member-bytes | CPU s | valid bpb | Δ vs ref |",
          "|---|---|---|---:|---:|---:|---:|---:|"]
    vs = ["| row | setting | data bytes | member-bytes | epochs | CPU s | wall s | peak RSS MB | valid bpb |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    full = ["| row | setting | epochs | member-bytes | CPU s | peak RSS MB | valid bpb | Δ vs es-full |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for group, name, what, _ in ROWS:
        r = mine.get(name)
        if r is None:
            continue
        if group == FULL_GROUP or name == "es-full":
            delta = "" if full_ref is None or name == "es-full" else f"{r['valid_bpb'] - full_ref:+.3f}"
            full.append(f"| {name} | {what} | {r['epochs']} | {r['member_bytes'] / 1e6:.1f} M | {r['cpu_s']:.0f} | "
                        f"{r['peak_rss_mb']:.0f} | {r['valid_bpb']:.3f} | {delta} |")
            if group == FULL_GROUP:
                continue
        if group not in VS_GROUPS:
            delta = "" if ref is None or name == "ref" else f"{r['valid_bpb'] - ref:+.3f}"
            ab.append(f"| {group} | {name} | {what} | {r['epochs']} | {r['member_bytes'] / 1e6:.1f} M | "
                      f"{r['cpu_s']:.0f} | {r['valid_bpb']:.3f} | {delta} |")
        if group in VS_GROUPS or name in ("ref", "T25"):
            vs.append(f"| {name} | {what} | {r['data_bytes'] / 1e6:.2f} M | {r['member_bytes'] / 1e6:.1f} M | "
                      f"{r['epochs']} | {r['cpu_s']:.0f} | {r['wall_s']:.0f} | {r['peak_rss_mb']:.0f} | "
                      f"{r['valid_bpb']:.3f} |")
    return "\n".join(ab) + "\n", "\n".join(vs) + "\n", "\n".join(full) + "\n"


def write_table(results: list[dict], path: Path, scale: float, small: bool, readme: Path | None = None) -> str:
    """Write the tables to ``path`` (and between the README's ``<!-- lm-study table -->``,
    ``<!-- lm-vs table -->`` and ``<!-- lm-full table -->`` markers when ``readme`` is given);
    returns the text."""
    ab, vs, full = tables(results, scale, small)
    text = (f"## Ablations at equal compute\n\n{ab}\n## Full length: the defaults, one change at a time\n\n{full}"
            f"\n## ES, backprop and int8\n\n{vs}")
    path.write_text(text)
    if readme is not None:
        doc = readme.read_text()
        for tag, body in (("lm-study table", ab), ("lm-vs table", vs), ("lm-full table", full)):
            a, b = f"<!-- {tag} -->\n", f"<!-- /{tag} -->"
            if a in doc and b in doc:
                doc = doc[:doc.index(a) + len(a)] + body + doc[doc.index(b):]
        readme.write_text(doc)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.lm_study", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="budget × 240·1024·100 member-bytes [1]")
    ap.add_argument("--small", action="store_true", help="the test suite's tiny setting")
    ap.add_argument("--only", default="", help="comma-separated row names [all]")
    ap.add_argument("--jobs", type=int, default=1, help="rows run at the same time [1]")
    ap.add_argument("--results", default=str(RESULTS), help="JSON lines, appended per row [%(default)s]")
    ap.add_argument("--table", default=str(TABLE), help="markdown table [%(default)s]")
    ap.add_argument("--readme", help="also fill the tables between the markers of this README")
    ap.add_argument("--row", help=argparse.SUPPRESS)          # internal: run one row, print its record
    ap.add_argument("--bp-cpu", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    names = [r[1] for r in ROWS]
    if args.row:
        print(json.dumps(run_row(args.row, args.scale, args.small, args.bp_cpu)))
        return 0
    wanted = [n for n in args.only.split(",") if n] or names
    unknown = [n for n in wanted if n not in names]
    if unknown:
        ap.error(f"--only: unknown rows {unknown}; rows are {','.join(names)}")
    if args.scale <= 0 or args.jobs < 1:
        ap.error("--scale must be > 0 and --jobs >= 1")
    path = Path(args.results)
    done = {r["name"] for r in load_results(path) if r["scale"] in (args.scale, "defaults") and r["small"] == args.small}
    todo = [n for n in wanted if n not in done]

    def one(name):
        extra = []
        overrides = next(r for r in ROWS if r[1] == name)[3]
        if "bp_time" in overrides:
            ref = [r for r in load_results(path) if r["name"] == overrides["bp_time"] and r["small"] == args.small
                   and (r["scale"] == args.scale or "defaults" in overrides)]
            if not ref:
                print(f"{name}: skipped, needs row {overrides['bp_time']!r} first", flush=True)
                return
            extra = ["--bp-cpu", str(ref[-1]["cpu_s"])]
        cmd = [sys.executable, "-m", "benchmarks.lm_study", "--row", name, "--scale", str(args.scale)] + \
              (["--small"] if args.small else []) + extra
        env = {**os.environ, "PYTHONPATH": str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent, env=env)
        if proc.returncode != 0:
            print(f"{name}: FAILED\n{proc.stderr[-2000:]}", flush=True)
            return
        rec = json.loads(proc.stdout.strip().splitlines()[-1])
        with open(path, "a") as f:                     # one line per row, written whole
            f.write(json.dumps(rec) + "\n")
        print(f"{name:10s} valid {rec['valid_bpb']:.3f} bpb  {rec['epochs']} epochs  {rec['cpu_s']:.0f} CPU s",
              flush=True)
        write_table(load_results(path), Path(args.table), args.scale, args.small)

    first = [n for n in todo if "bp_time" not in next(r for r in ROWS if r[1] == n)[3]]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(one, first))
    for n in todo:
        if n not in first:
            one(n)
    print(write_table(load_results(path), Path(args.table), args.scale, args.small,
                      Path(args.readme) if args.readme else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
