"""`evaluate` metric module: video-text retrieval R@K / MedR / MeanR, as reported in the paper's experiments.

Load it offline from its local path (no Hub access needed)::

    from trajtok_hf.metrics import load_metric
    metric = load_metric("video_text_retrieval")
    # == evaluate.load("<site-packages>/trajtok_hf/metrics/video_text_retrieval")

The computation is delegated to :func:`trajtok_hf.metrics.retrieval.retrieval_metrics`
(evaluate copies this file into its module cache, so it imports the installed
``trajtok_hf.metrics`` package rather than relative modules).
"""

import datasets
import evaluate
import numpy as np

from trajtok_hf.metrics.retrieval import retrieval_metrics

_CITATION = """\
@inproceedings{zheng2026trajtok,
  title     = {TrajTok},
  author    = {Zheng and others},
  booktitle = {CVPR},
  year      = {2026},
  note      = {arXiv:2602.22779}
}
"""

_DESCRIPTION = """\
Video-text retrieval metrics as used by TrajTok / TrajViT2 (as in the paper's experiments): Recall@K (percent),
median rank and mean rank, for text->video and video->text, from one text-video similarity
matrix. Several captions per video are supported: for video->text a hit is ANY correct caption
(rank = rank of the best-ranked correct caption). Ties are broken pessimistically by default
(a wrong candidate with an equal score is ranked first), so a constant similarity matrix scores
worst, not best; pass ties="optimistic" to count only strictly higher scores.
"""

_KWARGS_DESCRIPTION = """
Each example is ONE TEXT QUERY (one caption); examples can be added with `add`/`add_batch`
in any number of batches (the captions' order does not matter).

Args:
    predictions (`list` of `list` of `float32`): for each caption, its row of the
        text-video similarity matrix, i.e. the scores against ALL `num_videos` videos (same
        video order for every row, same length for every row). Larger = more similar.
    references (`list` of `int64`): for each caption, the index (column in its row) of the
        video it describes. Several captions may point to the same video; every video in
        0..num_videos-1 must have at least one caption.
    ks (`list` of `int`, optional, default [1, 5, 10]): the K of R@K.
    ties (`str`, optional, default "pessimistic"): "pessimistic" or "optimistic".

Returns:
    dict with "t2v_R@1", "t2v_R@5", "t2v_R@10" (percent), "t2v_MedR", "t2v_MeanR" (1-based
    ranks) and the same keys with prefix "v2t_".

Examples:
    >>> metric = load_metric("video_text_retrieval")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], references=[0, 1, 0])["t2v_R@1"]
    100.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VideoTextRetrieval(evaluate.Metric):
    """R@K / MedR / MeanR for text->video and video->text retrieval."""

    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2602.22779"],
        )

    def _compute(self, predictions, references, ks=(1, 5, 10), ties="pessimistic"):
        lengths = {len(row) for row in predictions}
        if len(lengths) > 1:
            raise ValueError(f"`predictions` rows must all have length num_videos, got lengths {sorted(lengths)[:10]}")
        similarity = np.asarray(predictions, dtype=np.float32)
        if similarity.ndim != 2:
            raise ValueError(f"`predictions` must form a 2-D (num_texts, num_videos) matrix, got {similarity.shape}")
        try:
            return retrieval_metrics(
                similarity, np.asarray(references, dtype=np.int64), layout="text_video", ks=ks, ties=ties
            )
        except ValueError as e:
            # Name the evaluate-level argument the user actually passed.
            raise ValueError(
                str(e).replace("`similarity`", "`predictions`").replace("`text_to_video`", "`references`")
            ) from e
