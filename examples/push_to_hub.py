"""Publish a saved trajtok_hf model folder on the Hugging Face Hub, with a generated model card.

    python examples/push_to_hub.py --model runs/seg/final --repo_id me/trajtok-segmenter-tiny
    python examples/push_to_hub.py --model runs/clip/final --repo_id me/trajvit2-tiny --private \
        --revision v0.1 --commit_message "TrajViT2 tiny, 20k steps" --dataset my-org/my-videos
    python examples/push_to_hub.py --model runs/seg/final --repo_id me/x --dry_run --card_out card.md  # no upload

Before anything is sent, the folder is validated (``trajtok_hf.hub.validate_folder``): it must load with the Auto class
of its ``model_type``, with safetensors weights, and run a forward pass on a generated clip (TrajViT2: with a caption
through its processor). The remote code its ``auto_map`` names is the folder's own ``*.py`` files or, when it has
none (the shipped ``checkpoints/*`` hold no code), written from the installed trajtok_hf into a staged temporary copy
of the folder, as ``save_pretrained`` writes it. By default the upload is also loaded with ``trust_remote_code=True``
in a Python where trajtok_hf cannot be imported, as a Hub user would, and must give the same outputs
(``--skip_remote_code_check`` to skip). A folder that fails is refused: nothing is uploaded (exit 2).

Pushed in one commit: ``*.safetensors``, ``config.json`` / ``generation_config.json``, processor and tokenizer files,
the remote-code ``*.py`` files, and the model card as ``README.md`` (never the folder's own README, pickle weights,
sub-folders or logs). The card (template ``trajtok_hf/hub/templates/<model>.md``) takes its evaluation
results from the files the training scripts write next to the model (``metrics.jsonl``'s last ``eval/*`` record,
``eval.json``) or from ``--eval_results FILE.json``; the training command from ``train_args.json``,
``--training_command`` or the script's default. An upload failure names the failed step (exit 1); the local folder
is only ever read.

Authentication: ``HF_TOKEN`` / ``hf auth login`` or ``--token``; ``--endpoint`` (or ``HF_ENDPOINT``) for another Hub.
"""

import argparse
import sys
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="folder written by save_pretrained (model + processor)")
    parser.add_argument("--repo_id", required=True, help="'namespace/name' on the Hub")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", default=None, help="branch to push to (created if missing; default main)")
    parser.add_argument("--commit_message", default=None)
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    parser.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)")
    card = parser.add_argument_group("model card")
    card.add_argument(
        "--eval_results",
        default=None,
        help="JSON of evaluation numbers ({'metric': value} or {'metrics': {...}, 'dataset': {...}}, plus further "
        "datasets as named blocks of the same form, e.g. 'shapes'); "
        "default: metrics.jsonl / eval.json written by the training scripts next to --model",
    )
    card.add_argument("--training_command", default=None, help="the command that trained this checkpoint")
    card.add_argument("--card_notes", default=None, help="a Markdown file: the card's Notes section")
    card.add_argument("--dataset", action="append", default=[], help="Hub id of a training dataset (repeatable)")
    card.add_argument("--base_model", action="append", default=[], help="Hub id of a base model (repeatable)")
    card.add_argument("--license", default="apache-2.0")
    card.add_argument("--tag", action="append", default=[], help="extra card tag (repeatable)")
    card.add_argument(
        "--template_dir",
        default=None,
        help="card templates (default: the ones shipped in trajtok_hf/hub/templates/)",
    )
    parser.add_argument(
        "--skip_remote_code_check",
        action="store_true",
        help="do not load the folder with trust_remote_code=True without trajtok_hf (faster)",
    )
    parser.add_argument("--dry_run", action="store_true", help="validate and build the card, upload nothing")
    parser.add_argument("--card_out", default=None, help="also write the generated card to this file")
    args = parser.parse_args(argv)
    if args.repo_id.count("/") != 1 or not all(args.repo_id.split("/")):
        parser.error(f"--repo_id must be 'namespace/name' (the card's code names the repository), got {args.repo_id!r}")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
from trajtok_hf.hub import (
    FolderValidationError,
    PushError,
    build_model_card,
    load_eval_results_json,
    push_folder,
    validate_folder,
)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = validate_folder(args.model, check_remote_code=not args.skip_remote_code_check)
    except FolderValidationError as error:
        print(f"error: refusing to push {args.model}: {error}", file=sys.stderr)
        return 2
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    checks = "loads, runs" + (", remote code matches" if report.remote_code_checked else "")
    print(
        f"validated {args.model}: {report.model_class} ({report.model_type}), "
        f"{report.num_parameters / 1e6:.2f} M parameters, processor {report.processor_class}; {checks}"
    )
    if report.remote_code_written:
        print(
            "remote code: the folder lacks modules its auto_map names; staged from the installed trajtok_hf as "
            f"save_pretrained writes it: {', '.join(report.remote_code_written)}"
        )

    try:
        eval_metrics = load_eval_results_json(args.eval_results) if args.eval_results else None
        notes = Path(args.card_notes).read_text(encoding="utf-8") if args.card_notes else None
        card = build_model_card(
            report,
            args.repo_id,
            eval_metrics=eval_metrics,
            training_command=args.training_command,
            datasets=args.dataset,
            base_model=args.base_model,
            license=args.license,
            extra_tags=args.tag,
            template_dir=args.template_dir,
            notes=notes,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: cannot build the model card: {error}", file=sys.stderr)
        return 2
    if args.card_out:
        card.save(args.card_out)
        print(f"model card written to {args.card_out}")
    if card.data.eval_results:
        print(f"card: {len(card.data.eval_results)} evaluation result(s)")
    else:
        print("card: no evaluation results (none found next to the model; see --eval_results)")

    print("files:", ", ".join(report.files + ["README.md"]))
    for name, why in report.skipped:
        print(f"  not pushed: {name} ({why})")
    if args.dry_run:
        print("dry run: nothing uploaded")
        return 0
    try:
        result = push_folder(
            report,
            args.repo_id,
            card,
            private=args.private or None,
            revision=args.revision,
            commit_message=args.commit_message,
            token=args.token,
            endpoint=args.endpoint,
        )
    except PushError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"pushed {len(result.files)} files to {result.repo_id}@{result.revision}: {result.commit_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
