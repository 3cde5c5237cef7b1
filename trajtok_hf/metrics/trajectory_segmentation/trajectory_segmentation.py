"""`evaluate` metric module: trajectory segmentation ARI / FG-ARI / mIoU (as in the paper's experiments).

Load it offline from its local path (no Hub access needed)::

    from trajtok_hf.metrics import load_metric
    metric = load_metric("trajectory_segmentation")
    # == evaluate.load("<site-packages>/trajtok_hf/metrics/trajectory_segmentation")

The computation is delegated to :func:`trajtok_hf.metrics.segmentation.segmentation_metrics`
(evaluate copies this file into its module cache, so it imports the installed
``trajtok_hf.metrics`` package rather than relative modules).
"""

import datasets
import evaluate

from trajtok_hf.metrics.segmentation import segmentation_metrics

_CITATION = """\
@inproceedings{zheng2026trajtok,
  title     = {TrajTok},
  author    = {Zheng and others},
  booktitle = {CVPR},
  year      = {2026},
  note      = {arXiv:2602.22779}
}
@article{hubert1985ari,
  title   = {Comparing partitions},
  author  = {Hubert, Lawrence and Arabie, Phipps},
  journal = {Journal of Classification},
  volume  = {2},
  number  = {1},
  pages   = {193--218},
  year    = {1985}
}
"""

_DESCRIPTION = """\
Trajectory (spatio-temporal) segmentation quality for clips with exact ground truth (as in the paper's experiments):
adjusted Rand index (ARI), foreground ARI (FG-ARI: only pixels whose ground truth is not
background), and Hungarian-matched mean IoU (one-to-one matching of GT and predicted segments
maximising total IoU, mean over GT segments, unmatched GT segments count as IoU 0), over all GT
segments (mIoU) and over foreground GT segments (FG-mIoU). Each metric is computed per clip over
all its frames at once (ids are trajectory ids) and then averaged over clips. Values are
fractions (not percent). Ground-truth pixels equal to `ignore_index` are dropped.
"""

_KWARGS_DESCRIPTION = """
Each example is ONE CLIP; examples can be added with `add`/`add_batch` in any number of batches.

Args:
    predictions (`list` of `list` of `int64`): for each clip, its predicted segment/trajectory id
        per pixel, FLATTENED (e.g. `pred.reshape(-1)` of a (T, h, w) id map). Ids are arbitrary
        integers (only the partition matters).
    references (`list` of `list` of `int64`): for each clip, the ground-truth ids flattened in the SAME
        order and of the same length as the clip's prediction. Clips may have different sizes.
    background_id (`int` or `None`, optional, default 0): GT id of the background for FG-ARI /
        FG-mIoU (None: no background, FG-* equal the plain metrics).
    ignore_index (`int` or `None`, optional, default -100): GT id of pixels to ignore.

Returns:
    dict with "ARI", "FG-ARI", "mIoU", "FG-mIoU" (means over the clips on which each is defined;
    a clip without foreground has no FG-ARI / FG-mIoU), "num_clips" and "num_clips_<metric>".

Examples:
    >>> metric = load_metric("trajectory_segmentation")
    >>> metric.compute(predictions=[[5, 5, 7, 7]], references=[[0, 0, 1, 1]])["ARI"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TrajectorySegmentation(evaluate.Metric):
    """ARI / FG-ARI / Hungarian-matched mIoU, per clip, averaged over clips."""

    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2602.22779"],
        )

    def _compute(self, predictions, references, background_id=0, ignore_index=-100):
        return segmentation_metrics(predictions, references, background_id=background_id, ignore_index=ignore_index)
