"""Before/after table of two ``bench_encoders.py`` result files (e.g. before and after a speed change).

For every (scale, batch, T) measured in both files: TrajViT2's latency before → after and the speed-up, the
TrajViT2 / ViT3D and TrajViT2 / ToMe latency ratios before → after, and the tokenizer's time per stage before →
after. Rows where either file lacks a latency (a skipped measurement) show "—". Only the two files are read; nothing
is measured, so compare files taken on the same machine.

    python benchmarks/compare_encoders.py benchmarks/results/before/encoders.json benchmarks/results/encoders.json

``--shared_peers``: when a change touches only TrajViT2, the "before" run may measure TrajViT2 alone
(``--models trajvit2``); its ratios then use the other file's ViT3D / ToMe latency of the same (scale, batch, T),
marked with ``†`` (a peer missing from both files still shows "—").

    python benchmarks/compare_encoders.py --shared_peers benchmarks/results/streaming/before.json \
        benchmarks/results/streaming/after.json

``--dtype``: a file may hold fp32 and bf16 measurements (``bench_encoders.py --dtype fp32 bf16``); only those of
the given dtype are compared (default fp32; a measurement without a ``dtype`` field is fp32).
"""

from __future__ import annotations

import argparse
import json

STAGES = ("backbone", "query_perceiver", "assignment", "soft_pool", "refinement", "tokenizer")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", help="bench_encoders.py JSON measured first")
    parser.add_argument("after", help="bench_encoders.py JSON measured after the change")
    parser.add_argument(
        "--shared_peers",
        action="store_true",
        help="use the other file's ViT3D / ToMe latency where one file has none (marked †)",
    )
    parser.add_argument(
        "--dtype",
        choices=("fp32", "bf16"),
        default="fp32",
        help="compare the measurements of this dtype (default fp32; files without dtypes are fp32)",
    )
    return parser.parse_args(argv)


def _load(path: str, dtype: str = "fp32") -> dict:
    try:
        with open(path) as f:
            result = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"error: cannot read {path}: {error}") from error
    if not isinstance(result, dict) or not isinstance(result.get("measurements"), list):
        raise SystemExit(f"error: {path} is not a bench_encoders.py result (no 'measurements' list)")
    return {
        (m["scale"], m["batch_size"], m["frames"], m["model"]): m
        for m in result["measurements"]
        if m.get("dtype", "fp32") == dtype
    }


def _latency(rows: dict, key: tuple) -> float | None:
    value = rows.get(key, {}).get("latency_s")
    return float(value) if value else None


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b is not None else None


def compare(before: dict, after: dict, shared_peers: bool = False) -> str:
    """Markdown tables (str) comparing two loaded result dicts keyed by (scale, batch, frames, model);
    ``shared_peers``: a peer latency missing from one file is taken from the other (marked †)."""
    cases = sorted({k[:3] for k in before if k[3] == "trajvit2"} & {k[:3] for k in after if k[3] == "trajvit2"})
    if not cases:
        raise SystemExit(
            "error: the two files share no TrajViT2 measurement (scale, batch size, frames) of the compared --dtype"
        )
    lines = [
        "| scale | batch | T | TrajViT2 s before → after | speed-up | TrajViT2/ViT3D before → after "
        "| TrajViT2/ToMe before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    for scale, batch, frames in cases:
        t_before = _latency(before, (scale, batch, frames, "trajvit2"))
        t_after = _latency(after, (scale, batch, frames, "trajvit2"))
        ratios = []
        for peer in ("vit3d", "tome"):
            key = (scale, batch, frames, peer)
            cells = []
            for t, own, other in ((t_before, before, after), (t_after, after, before)):
                peer_latency, mark = _latency(own, key), ""
                if peer_latency is None and shared_peers and _latency(other, key) is not None:
                    peer_latency, mark = _latency(other, key), "†"
                cells.append(_fmt(_ratio(t, peer_latency), ".2f") + mark)
            ratios.append(" → ".join(cells))
        lines.append(
            f"| {scale} | {batch} | {frames} | {_fmt(t_before, '.2f')} → {_fmt(t_after, '.2f')} | "
            f"{_fmt(_ratio(t_before, t_after), '.2f')}× | {ratios[0]} | {ratios[1]} |"
        )
    lines += ["", "| scale | batch | T | " + " | ".join(STAGES) + " |", "|---|---|---|" + "---|" * len(STAGES)]
    for scale, batch, frames in cases:
        stages_before = before[(scale, batch, frames, "trajvit2")].get("tokenizer_stages") or {}
        stages_after = after[(scale, batch, frames, "trajvit2")].get("tokenizer_stages") or {}
        cells = []
        for stage in STAGES:
            b = stages_before.get(stage, {}).get("time_s")
            a = stages_after.get(stage, {}).get("time_s")
            cells.append(f"{_fmt(b and b * 1000, '.0f')} → {_fmt(a and a * 1000, '.0f')} ms")
        lines.append(f"| {scale} | {batch} | {frames} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> str:
    args = parse_args(argv)
    table = compare(_load(args.before, args.dtype), _load(args.after, args.dtype), shared_peers=args.shared_peers)
    print(table)
    return table


if __name__ == "__main__":
    main()
