"""Data loading from shards vs from a video folder: write time, bytes on disk, and streamed clips per second decoded
and processed, for DataLoader worker counts 0, 1, 2 (``--workers``).

A video folder of ``--num_clips`` generated clips (``trajtok_hf.data.write_video_folder``: ``--num_frames`` frames
at ``--size``², H.264 when available, with ``.npz`` masks) is written as Parquet and as WebDataset shards
(``trajtok_hf.data.write_video_shards``). Measured:

* write: seconds of ``write_video_shards`` and the shard folder's bytes, beside the folder's (videos, masks and
  metadata file);
* train: the training step of ``--train_model`` (a TrajViT2: forward, contrastive loss, backward, AdamW step) on
  batches of ``--batch_size`` clips read from the Parquet shards and prepared by the model's own processor (all in
  memory before the timing), in one process with ``--train_threads``: the clips per second that training consumes,
  and the DataLoader workers it needs at the measured per-worker rate;
* read: one full epoch per (source, workers), timed from building the loader to its last batch (worker start-up
  included); the median of ``--repeats`` rounds over all (source, workers) pairs, after one untimed epoch. Each clip
  is decoded with PyAV (``--sample_frames`` frames, uniformly) and processed by the TrajTok video processor
  (``--processor``: a saved processor folder, by default that of ``checkpoints/trajtok-small-shapes``, or
  ``default`` for ``TrajTokVideoProcessor()``) in batches of ``--batch_size``, then collated by
  ``VideoTextCollator``. Sources: the shards through ``trajtok_hf.data.shard_dataloader``, and, as the reference,
  the folder through ``load_video_text_dataset`` (its decoding transform, shuffled ``torch`` ``DataLoader``).
  Reported: clips/s, and clips/s per worker (the main process counts as one worker when ``--workers`` is 0).

The machine (CPU model, cores, load average at the start: other jobs share the CPU) is recorded with the numbers.

    python benchmarks/data_loading.py                                   # 256 clips of 16 frames at 128²
    python benchmarks/data_loading.py --num_clips 32 --size 64 --output /tmp/data_loading.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PROCESSOR = REPO_ROOT / "checkpoints" / "trajtok-small-shapes"
DEFAULT_TRAIN_MODEL = REPO_ROOT / "checkpoints" / "trajvit2-tiny-shapes"
SOURCES = ("folder", "parquet", "webdataset")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_clips", type=int, default=256, help="clips in the generated video folder")
    parser.add_argument("--num_frames", type=int, default=16, help="frames per generated clip")
    parser.add_argument("--size", type=int, default=128, help="frame height and width of the generated clips")
    parser.add_argument(
        "--sample_frames", type=int, default=None, help="frames decoded per clip (default: the processor's)"
    )
    parser.add_argument("--clips_per_shard", type=int, default=16, help="clips per shard")
    parser.add_argument("--rows_per_group", type=int, default=8, help="clips per Parquet row group")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts")
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per (source, workers); the median")
    parser.add_argument(
        "--processor",
        default=str(DEFAULT_PROCESSOR),
        help="a saved video processor folder, or 'default' for TrajTokVideoProcessor()",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the main process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work_dir", default=None, help="keep the folder and shards here (default: a temp dir)")
    parser.add_argument(
        "--train_model",
        default=str(DEFAULT_TRAIN_MODEL),
        help="a saved TrajViT2 folder whose training step is timed beside the loaders ('none': skip)",
    )
    parser.add_argument("--train_steps", type=int, default=10, help="timed training steps (after 2 warm-up steps)")
    parser.add_argument(
        "--train_threads", type=int, default=None, help="torch threads of the training step (default: torch's)"
    )
    parser.add_argument("--output", default=None, help="JSON path (default: stdout only)")
    args = parser.parse_args(argv)
    for name in ("num_clips", "num_frames", "size", "clips_per_shard", "rows_per_group", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("sample_frames", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if any(w < 0 for w in args.workers):
        parser.error(f"--workers must be >= 0, got {args.workers}")
    if args.size % 4:
        parser.error(f"--size must be a multiple of 4 (the generator's mask grid), got {args.size}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.train_steps < 1:
        parser.error(f"--train_steps must be >= 1, got {args.train_steps}")
    if args.train_model != "none" and not os.path.isfile(os.path.join(args.train_model, "config.json")):
        parser.error(f"--train_model {args.train_model}: no config.json there (a saved TrajViT2 folder) nor 'none'")
    if args.processor != "default" and not os.path.isdir(args.processor):
        parser.error(f"--processor {args.processor}: not a folder (a saved video processor) nor 'default'")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_encoders import cpu_model  # noqa: E402
from transformers import AutoModel, AutoProcessor, AutoVideoProcessor  # noqa: E402

import trajtok_hf  # noqa: E402,F401  (registers the Auto classes)
from trajtok_hf import TrajTokVideoProcessor  # noqa: E402
from trajtok_hf.data import (  # noqa: E402
    SyntheticVideoConfig,
    VideoTextCollator,
    load_video_text_dataset,
    shard_dataloader,
    write_video_folder,
    write_video_shards,
)


class ProcessVideos:
    """The decoders' ``transform``: a batch of decoded clips through the video processor (frames already sampled)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, videos):
        return self.processor(videos=videos, do_sample_frames=False, return_tensors="pt")


def machine() -> dict:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    import av
    import datasets
    import pyarrow

    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": affinity,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "datasets": datasets.__version__,
        "pyarrow": pyarrow.__version__,
        "av": av.__version__,
    }


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def time_epoch(make_loader) -> tuple[float, int]:
    """Seconds from building the loader to its last batch, and the clips it yielded."""
    started = time.perf_counter()
    clips = 0
    for batch in make_loader():
        if batch is not None:
            clips += batch["pixel_values_videos"].shape[0]
    return time.perf_counter() - started, clips


def time_training_step(model_dir: str, shards: Path, args) -> dict:
    """Seconds per optimizer step of a TrajViT2 on prepared batches from the shards (see the module docstring)."""
    from trajtok_hf.training import build_optimizer

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).train()
    optimizer = build_optimizer(model, 1e-4)
    video_processor = processor.video_processor
    collator = VideoTextCollator(tokenizer=processor.tokenizer, warn_on_drop=False)
    loader = shard_dataloader(
        shards,
        batch_size=args.batch_size,
        collate_fn=collator,
        num_frames=int(video_processor.num_frames or args.num_frames),
        seed=args.seed,
        transform=ProcessVideos(video_processor),
    )
    batches = [batch for batch in loader if batch is not None]
    batches = [b for b in batches if b["pixel_values_videos"].shape[0] == args.batch_size] or batches
    threads = torch.get_num_threads()
    if args.train_threads:
        torch.set_num_threads(args.train_threads)
    times = []
    try:
        for step in range(args.train_steps + 2):
            batch = batches[step % len(batches)]
            started = time.perf_counter()
            loss = model(
                pixel_values_videos=batch["pixel_values_videos"],
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                return_loss=True,
            ).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step >= 2:
                times.append(time.perf_counter() - started)
    finally:
        train_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
    step_s = statistics.median(times)
    return {
        "model": os.path.relpath(model_dir, REPO_ROOT) if Path(model_dir).is_relative_to(REPO_ROOT) else model_dir,
        "frames": list(batches[0]["pixel_values_videos"].shape[1:]),
        "batch_size": int(batches[0]["pixel_values_videos"].shape[0]),
        "threads": train_threads,
        "step_s": step_s,
        "steps_s": times,
        "clips_per_s": int(batches[0]["pixel_values_videos"].shape[0]) / step_s,
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine()
    if args.processor == "default":
        processor = TrajTokVideoProcessor()
    else:
        processor = AutoVideoProcessor.from_pretrained(args.processor)
    sample_frames = args.sample_frames or int(processor.num_frames or args.num_frames)
    transform = ProcessVideos(processor)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="data_loading_"))
    try:
        folder = work / "videos"
        if folder.exists():
            shutil.rmtree(folder)
        config = SyntheticVideoConfig(num_frames=args.num_frames, height=args.size, width=args.size)
        started = time.perf_counter()
        write_video_folder(folder, args.num_clips, config, seed=args.seed)
        generate_s = time.perf_counter() - started
        source_bytes = folder_bytes(folder)

        write = {}
        for name in ("parquet", "webdataset"):
            started = time.perf_counter()
            index = write_video_shards(
                folder,
                work / name,
                format=name,
                clips_per_shard=args.clips_per_shard,
                rows_per_group=args.rows_per_group,
                seed=args.seed,
                overwrite=True,
            )
            seconds = time.perf_counter() - started
            num_bytes = folder_bytes(work / name)
            write[name] = {
                "seconds": seconds,
                "num_shards": index["num_shards"],
                "num_bytes": num_bytes,
                "bytes_vs_folder": num_bytes / source_bytes,
            }

        def loader(source: str, workers: int):
            collator = VideoTextCollator(warn_on_drop=False)
            if source == "folder":
                dataset = load_video_text_dataset(folder, sample_frames, transform=transform)
                generator = torch.Generator().manual_seed(args.seed)
                return DataLoader(
                    dataset,
                    batch_size=args.batch_size,
                    shuffle=True,
                    generator=generator,
                    num_workers=workers,
                    collate_fn=collator,
                )
            return shard_dataloader(
                work / source,
                batch_size=args.batch_size,
                collate_fn=collator,
                num_workers=workers,
                seed=args.seed,
                num_frames=sample_frames,
                transform=transform,
            )

        # One untimed epoch first (lazy imports, the processor's first call), then the timed epochs in rounds over
        # every (source, workers), so that drifts of a shared machine's load hit all of them alike.
        warmup_s, _ = time_epoch(lambda: loader("folder", 0))
        configs = [(source, workers) for source in SOURCES for workers in args.workers]
        runs = {config: [] for config in configs}
        for round_index in range(args.repeats):
            for source, workers in configs:
                seconds, clips = time_epoch(lambda source=source, workers=workers: loader(source, workers))
                if clips != args.num_clips:
                    raise RuntimeError(f"{source} with {workers} workers yielded {clips} of {args.num_clips} clips")
                runs[(source, workers)].append(seconds)
                print(
                    f"round {round_index + 1}/{args.repeats} {source:>10} workers={workers}: "
                    f"{args.num_clips / seconds:.1f} clips/s",
                    flush=True,
                )
        results = []
        for (source, workers), times in runs.items():
            median = statistics.median(times)
            results.append(
                {
                    "source": source,
                    "num_workers": workers,
                    "clips": args.num_clips,
                    "seconds": median,
                    "runs_s": times,
                    "clips_per_s": args.num_clips / median,
                    "clips_per_s_per_worker": args.num_clips / median / max(workers, 1),
                }
            )
        train = None
        if args.train_model != "none":
            train = time_training_step(args.train_model, work / "parquet", args)
            best = max(r["clips_per_s_per_worker"] for r in results if r["source"] == "parquet")
            train["workers_needed"] = math.ceil(train["clips_per_s"] / best)
            print(
                f"training step ({train['model']}, batch {train['batch_size']}, {train['threads']} threads): "
                f"{train['step_s']:.3f} s = {train['clips_per_s']:.1f} clips/s; workers needed at "
                f"{best:.1f} clips/s per worker: {train['workers_needed']}"
            )
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)

    report = {
        "benchmark": "data_loading",
        "machine": info,
        "config": {
            "num_clips": args.num_clips,
            "num_frames": args.num_frames,
            "size": args.size,
            "sample_frames": sample_frames,
            "processor": args.processor if args.processor == "default" else os.path.relpath(args.processor, REPO_ROOT),
            "processor_size": dict(processor.size) if processor.size is not None else None,
            "clips_per_shard": args.clips_per_shard,
            "rows_per_group": args.rows_per_group,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "repeats": args.repeats,
            "threads": args.threads,
            "seed": args.seed,
        },
        "folder": {"num_bytes": source_bytes, "generate_s": generate_s},
        "warmup_s": warmup_s,
        "write": write,
        "results": results,
        "train": train,
    }
    print()
    print(markdown_table(report))
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {output}")
    return report


def markdown_table(report: dict) -> str:
    workers = report["config"]["workers"]
    header = ["source", "write (s)", "MiB on disk", "× folder"]
    header += [f"clips/s, {w} workers (per worker)" for w in workers]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_key = {(r["source"], r["num_workers"]): r for r in report["results"]}
    for source in SOURCES:
        if source == "folder":
            cells = [source, "–", f"{report['folder']['num_bytes'] / 2**20:.2f}", "1.00"]
        else:
            write = report["write"][source]
            cells = [source, f"{write['seconds']:.2f}", f"{write['num_bytes'] / 2**20:.2f}"]
            cells.append(f"{write['bytes_vs_folder']:.2f}")
        for w in workers:
            r = by_key[(source, w)]
            cells.append(f"{r['clips_per_s']:.1f} ({r['clips_per_s_per_worker']:.1f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
