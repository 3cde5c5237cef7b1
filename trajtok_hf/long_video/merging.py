"""One token set for a whole video: the tokens of each linked trajectory merged over all its chunks.

Per chunk TrajTok emits ``n`` tokens per active trajectory (paper Sec. 3), so the token count of a video grows with
its length even when nothing changes. Once :class:`~trajtok_hf.long_video.linking.TrajectoryLinker` has given
every chunk's trajectories global ids, :class:`TrajectoryTokenMerger` keeps, for each global id, the
pixel-count-weighted mean of its tokens over the chunks it appears in (sub-token ``s`` with sub-token ``s``) and its
time span, the first and last frame where it has a pixel. A static shot of any length then costs about one chunk's
tokens; a busy one costs its number of distinct objects. Running sums: the state is one row per global id, whatever
the length of the video. This merging is not in the official release (which has no long-video path).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["MergedTrajectoryTokens", "TrajectoryTokenMerger"]


@dataclass
class MergedTrajectoryTokens:
    """The merged tokens of one video (M = global trajectories, n = tokens per trajectory, D = token width).

    Tokens are ordered by the start of their trajectory's span (then by global id), trajectory-major: token
    ``m·n + s`` is sub-token ``s`` of trajectory ``m``. The order is the video's time order for models that read
    tokens as a sequence (an LLM prompt).

    Args:
        trajectory_tokens (`torch.FloatTensor` of shape `(M·n, D)`): merged tokens.
        trajectory_spans (`torch.LongTensor` of shape `(M·n, 2)`): ``[start_frame, end_frame)`` of each token's
            trajectory, in frames of the streamed video.
        global_ids (`torch.LongTensor` of shape `(M,)`): the linker's id of each trajectory.
        tokens_per_trajectory (`int`): n.
    """

    trajectory_tokens: torch.Tensor
    trajectory_spans: torch.Tensor
    global_ids: torch.Tensor
    tokens_per_trajectory: int

    @property
    def num_trajectories(self) -> int:
        return int(self.global_ids.numel())

    @property
    def num_tokens(self) -> int:
        return int(self.trajectory_tokens.shape[0])

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """A batch of one video: ``trajectory_tokens (1, M·n, D)``, ``trajectory_mask (1, M·n)`` (all True) and
        ``trajectory_spans (1, M·n, 2)``, as [`TrajViT2Model.get_video_features`] takes them."""
        return {
            "trajectory_tokens": self.trajectory_tokens.unsqueeze(0),
            "trajectory_mask": torch.ones(1, self.num_tokens, dtype=torch.bool, device=self.trajectory_tokens.device),
            "trajectory_spans": self.trajectory_spans.unsqueeze(0),
        }


class TrajectoryTokenMerger:
    """Running, pixel-weighted mean of each global trajectory's tokens over the chunks it appears in.

    Call :meth:`update` once per chunk (in any order), then :meth:`result`. Several slots of one chunk may share a
    global id (a trajectory the segmenter split): their tokens are averaged together, weighted by their pixels.
    """

    def __init__(self):
        self._sums: torch.Tensor | None = None  # (M, n, D) float64 weighted sums, row = global id
        self._weights = torch.zeros(0, dtype=torch.float64)
        self._start = torch.zeros(0, dtype=torch.long)
        self._end = torch.zeros(0, dtype=torch.long)

    def _grow(self, size: int, n: int, width: int) -> None:
        if self._sums is None:
            self._sums = torch.zeros(0, n, width, dtype=torch.float64)
        elif self._sums.shape[1:] != (n, width):
            raise ValueError(
                f"`tokens` must be (slots, {self._sums.shape[1]}, {self._sums.shape[2]}) like the earlier chunks, got "
                f"(slots, {n}, {width})"
            )
        extra = size - self._weights.numel()
        if extra > 0:
            self._sums = torch.cat((self._sums, self._sums.new_zeros(extra, n, width)))
            self._weights = torch.cat((self._weights, self._weights.new_zeros(extra)))
            self._start = torch.cat((self._start, self._start.new_full((extra,), torch.iinfo(torch.long).max)))
            self._end = torch.cat((self._end, self._end.new_full((extra,), -1)))

    def update(
        self,
        tokens: torch.Tensor,
        global_ids: torch.Tensor,
        pixel_counts: torch.Tensor,
        first_frame: torch.Tensor,
        last_frame: torch.Tensor,
    ) -> None:
        """Add one chunk.

        Args:
            tokens (`torch.FloatTensor` of shape `(S, n, D)`): the chunk's tokens per slot.
            global_ids (`torch.LongTensor` of shape `(S,)`): each slot's global id, -1 for empty slots (ignored).
            pixel_counts, first_frame, last_frame (`torch.LongTensor` of shape `(S,)`): the slot's pixels in the
                chunk and its first and last frame in the video (as [`ChunkLinks`] gives them).
        """
        if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3:
            raise ValueError(
                f"`tokens` must be a (slots, n, D) tensor, got {getattr(tokens, 'shape', type(tokens).__name__)}"
            )
        slots = tokens.shape[0]
        for name, value in (
            ("global_ids", global_ids),
            ("pixel_counts", pixel_counts),
            ("first_frame", first_frame),
            ("last_frame", last_frame),
        ):
            if not isinstance(value, torch.Tensor) or value.shape != (slots,):
                raise ValueError(
                    f"`{name}` must be a ({slots},) tensor, one entry per slot of `tokens`, got "
                    f"{getattr(value, 'shape', type(value).__name__)}"
                )
        used = global_ids >= 0
        ids = global_ids[used].cpu().long()
        if ids.numel() == 0:
            return
        self._grow(int(ids.max()) + 1, tokens.shape[1], tokens.shape[2])
        weights = pixel_counts[used].cpu().double()
        self._sums.index_add_(0, ids, tokens[used].detach().cpu().double() * weights[:, None, None])
        self._weights.index_add_(0, ids, weights)
        self._start.scatter_reduce_(0, ids, first_frame[used].cpu().long(), reduce="amin")
        self._end.scatter_reduce_(0, ids, last_frame[used].cpu().long() + 1, reduce="amax")

    def result(self, dtype: torch.dtype = torch.float32) -> MergedTrajectoryTokens:
        """The merged tokens so far (see [`MergedTrajectoryTokens`]); the merger can keep going afterwards."""
        seen = torch.nonzero(self._weights > 0).squeeze(1)
        if self._sums is None or seen.numel() == 0:
            raise ValueError("no trajectory has been merged: call update() with at least one non-empty chunk first")
        order = seen[torch.argsort(self._start[seen] * (int(seen.max()) + 1) + seen)]  # by start, then by id
        n = self._sums.shape[1]
        tokens = (self._sums[order] / self._weights[order, None, None]).to(dtype)
        spans = torch.stack((self._start[order], self._end[order]), dim=-1).repeat_interleave(n, dim=0)
        return MergedTrajectoryTokens(
            trajectory_tokens=tokens.flatten(0, 1),
            trajectory_spans=spans,
            global_ids=order,
            tokens_per_trajectory=n,
        )
