"""``keras-opt benchmark``: LiteRT latency of a ``.tflite`` file.

Init time, first inference, warmup, then N timed runs (mean, std, p50, p90,
p99), with the thread count and delegate (XNNPACK by default, with a recorded
fallback). ``--json`` writes the figures to a file.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from keras_opt.cli._quiet import quiet_tensorflow, redirect_fds


def register(sub: Any) -> None:
    """Add the ``benchmark`` sub-command to ``sub`` (an argparse sub-parsers object)."""
    p = sub.add_parser(
        "benchmark",
        help="measure the LiteRT latency of a .tflite file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE.tflite")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    p.add_argument("--runs", type=int, default=50, help="timed runs (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="warmup runs (default 5)")
    p.add_argument("--no-xnnpack", action="store_true", help="plain kernels, no XNNPACK")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``keras-opt benchmark``; returns the exit status."""
    from keras_opt.cli import CLIError, as_flags

    quiet_tensorflow()
    from keras_opt.tflite import benchmark

    try:
        with redirect_fds(None):
            r = benchmark(
                args.file,
                threads=args.threads,
                runs=args.runs,
                warmup=args.warmup,
                use_xnnpack=not args.no_xnnpack,
            )
    except (ValueError, TypeError) as err:
        raise CLIError(
            as_flags(str(err), {"path": "FILE", "threads": "--threads", "runs": "--runs"})
        ) from None
    lat = r.latency_ms
    print(f"{args.file}: {os.path.getsize(args.file)} bytes, {r.threads} thread(s), {r.delegate}")
    print(f"  init          {r.init_ms:10.3f} ms")
    print(f"  first run     {r.first_ms:10.3f} ms")
    print(f"  warmup (avg)  {r.warmup_ms:10.3f} ms ({r.warmup} runs)")
    print(f"  mean +- std   {lat['mean']:10.4f} +- {lat['std']:.4f} ms ({r.runs} runs)")
    print(f"  p50/p90/p99   {lat['p50']:.4f} / {lat['p90']:.4f} / {lat['p99']:.4f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"file": args.file, **r.to_dict()}, f, indent=2)
    return 0
