"""Cross-chunk trajectory linking: one global id per object over a whole video.

TrajTok segments every chunk of ``chunk_size`` frames on its own (paper Sec. 3): trajectory ``k`` of chunk ``c``
has no relation to trajectory ``k`` of chunk ``c + 1``, and the paper names this as a limitation for long videos.
:class:`TrajectoryLinker` gives each chunk's trajectories *global* ids, chunk after chunk, as a tracker would, from
what the tokenizer already computes:

* **overlap** — the mask of a trajectory in the first frame where it appears in the new chunk against each live
  track's mask in the last frame where it was seen, moved by the track's velocity (its centroid's displacement over
  its last chunk) over the frames in between (``motion_compensation``). IoU on the mask grid, one-to-one by the
  Hungarian algorithm (``scipy.optimize.linear_sum_assignment``); pairs below ``min_iou``, and with descriptors
  pairs that look too different (``min_overlap_similarity``: an object appearing where another just vanished),
  stay unmatched.
* **splits** (``allow_splits``, off by default) — a new trajectory left unmatched whose first mask lies mostly
  (``split_coverage``) inside a track's mask continues that track too, so that both pieces of an object the
  segmenter cuts in two keep its id. With descriptors the piece must also look like the track (``min_similarity``):
  an object that appears in front of the background lies inside the background's mask as well.
* **appearance** — trajectories still unmatched are compared with the tracks that were not continued (lost: hidden
  across the boundary, or missed by the segmenter for some frames) by the cosine similarity of their appearance
  descriptors, one-to-one, accepting ``min_similarity`` and above, and only within ``max_distance`` (a fraction of
  the frame diagonal) of where the track is predicted to be. The stream's default descriptor is the mean of the
  segmenter's own pixel embedding (the space of Eq. 1) over the trajectory's pixels.

``method`` selects ``"overlap"`` (overlap, and splits if allowed), ``"appearance"`` (descriptors only) or
``"overlap_appearance"`` (all of them, the default). A track not seen for more than ``max_gap_frames`` frames is
dropped, so the linker's state is bounded by the objects alive in that window, not by the video's length; an
object that comes back after that gets a new id. ``benchmarks/long_video.py`` measures every option (and the
defaults were chosen on generated videos that the reported numbers do not use).

Everything is a few tensor operations per chunk (bincounts for presence, matrix products for the overlaps and the
similarities, one mask shift per distinct start frame); the only other loop is scipy's assignment on
(trajectories × tracks) matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

__all__ = ["LINK_METHODS", "ChunkLinks", "TrajectoryLinker", "trajectory_presence"]

LINK_METHODS = ("overlap", "appearance", "overlap_appearance")


@dataclass
class ChunkLinks:
    """The links of one chunk (S = trajectory slots of the chunk, e.g. K; t = its frames).

    Args:
        global_ids (`torch.LongTensor` of shape `(S,)`): the global id of each slot; -1 for slots with no pixel.
        trajectory_ids (`torch.LongTensor` of shape `(t, h, w)`): the chunk's id map with global ids.
        first_frame (`torch.LongTensor` of shape `(S,)`): first frame (index in the video) where each slot has a
            pixel; -1 for empty slots.
        last_frame (`torch.LongTensor` of shape `(S,)`): last such frame; -1 for empty slots.
        pixel_counts (`torch.LongTensor` of shape `(S,)`): pixels of each slot in the chunk.
        new_ids (`list[int]`): global ids first given in this chunk.
    """

    global_ids: torch.Tensor
    trajectory_ids: torch.Tensor
    first_frame: torch.Tensor
    last_frame: torch.Tensor
    pixel_counts: torch.Tensor
    new_ids: list[int]


def trajectory_presence(trajectory_ids: torch.Tensor, num_slots: int) -> torch.Tensor:
    """Pixels of each id in each frame: ``(t, num_slots)`` long counts of an id map ``(t, h, w)`` with ids in
    ``[0, num_slots)``."""
    frames = trajectory_ids.shape[0]
    codes = trajectory_ids.reshape(frames, -1) + num_slots * torch.arange(frames, device=trajectory_ids.device)[:, None]
    return torch.bincount(codes.reshape(-1), minlength=frames * num_slots).view(frames, num_slots)


def _first_last(present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last frame (within the chunk) of each column of a (t, S) bool presence matrix; -1 if absent."""
    frames = present.shape[0]
    order = torch.arange(frames, device=present.device)[:, None]
    seen = present.any(dim=0)
    first = torch.where(present, order, frames).amin(dim=0)
    last = torch.where(present, order, -1).amax(dim=0)
    return torch.where(seen, first, -1), last


def _masks_at(trajectory_ids: torch.Tensor, frames: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(A, h·w) bool: the pixels of ``ids[a]`` in chunk frame ``frames[a]``."""
    return trajectory_ids.flatten(1)[frames] == ids[:, None]


def _assign(score: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one rows ↔ columns maximising the total score; pairs below ``threshold`` dropped."""
    if score.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rows, cols = linear_sum_assignment(score, maximize=True)
    keep = score[rows, cols] >= threshold
    return rows[keep], cols[keep]


def _check_similarity(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be a number in [-1, 1], got {value!r}")
    return float(value)


def _centroids(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(N, 2) mean (row, column) of (N, h·w) float masks (the grid centre for an empty mask)."""
    rows = torch.arange(grid[0]).repeat_interleave(grid[1]).float()
    cols = torch.arange(grid[1]).repeat(grid[0]).float()
    area = masks.sum(1)
    centre = torch.tensor([(grid[0] - 1) / 2, (grid[1] - 1) / 2])
    mean = torch.stack((masks @ rows, masks @ cols), dim=1) / area.clamp(min=1)[:, None]
    return torch.where(area[:, None] > 0, mean, centre)


def _shift_masks(masks: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """(M, h, w) bool masks moved by (M, 2) integer (rows, columns); what leaves the grid is dropped."""
    m, h, w = masks.shape
    rows = torch.arange(h)[None, :] - shift[:, :1]  # (M, h): source row of each target row
    cols = torch.arange(w)[None, :] - shift[:, 1:]
    valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    index = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]
    return masks.flatten(1).gather(1, index.flatten(1)).view(m, h, w) & valid


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be a number in [0, 1], got {value!r}")
    return float(value)


class TrajectoryLinker:
    """Stateful linker of consecutive chunks' trajectories into global ids (see the module docstring).

    Args:
        method (`str`, defaults to `"overlap_appearance"`): one of :data:`LINK_METHODS`.
        min_iou (`float`, defaults to 0.2): least IoU of an overlap link.
        allow_splits (`bool`, defaults to `False`): let several trajectories of a chunk continue one track.
        split_coverage (`float`, defaults to 0.5): least fraction of a trajectory's first mask inside the track's
            last mask for a split link.
        min_similarity (`float`, defaults to 0.98): least cosine similarity of an appearance link (and of a split
            link, with descriptors).
        min_overlap_similarity (`float`, defaults to 0.5): with descriptors, least cosine similarity of an overlap
            link: an object that appears where another one just vanished overlaps it, but does not look like it.
        max_distance (`float` or None, defaults to 0.15): greatest distance, as a fraction of the frame diagonal,
            between a trajectory and a lost track's predicted position for an appearance link (None: anywhere).
        motion_compensation (`bool`, defaults to `True`): compare a track's mask moved by its velocity (from its
            last chunk) over the frames since it was seen, instead of where it was last seen.
        max_gap_frames (`int`, defaults to 64): frames a track may go unseen and still be continued.
    """

    def __init__(
        self,
        method: str = "overlap_appearance",
        min_iou: float = 0.2,
        allow_splits: bool = False,
        split_coverage: float = 0.5,
        min_similarity: float = 0.98,
        min_overlap_similarity: float = 0.5,
        max_distance: float | None = 0.15,
        motion_compensation: bool = True,
        max_gap_frames: int = 64,
    ):
        if method not in LINK_METHODS:
            raise ValueError(f"`method` must be one of {LINK_METHODS}, got {method!r}")
        if isinstance(max_gap_frames, bool) or not isinstance(max_gap_frames, int) or max_gap_frames < 0:
            raise ValueError(f"`max_gap_frames` must be a non-negative int, got {max_gap_frames!r}")
        self.method = method
        self.min_iou = _check_fraction("min_iou", min_iou)
        self.allow_splits = bool(allow_splits)
        self.split_coverage = _check_fraction("split_coverage", split_coverage)
        self.min_similarity = _check_similarity("min_similarity", min_similarity)
        self.min_overlap_similarity = _check_similarity("min_overlap_similarity", min_overlap_similarity)
        self.max_distance = None if max_distance is None else _check_fraction("max_distance", max_distance)
        self.motion_compensation = bool(motion_compensation)
        self.max_gap_frames = max_gap_frames
        self.reset()

    def reset(self) -> None:
        """Forget every track (a new video)."""
        self.next_id = 0
        self._ids = torch.zeros(0, dtype=torch.long)
        self._masks: torch.Tensor | None = None  # (M, h, w) bool, each track's mask in its last seen frame
        self._last = torch.zeros(0, dtype=torch.long)  # (M,) last seen frame
        self._velocity = torch.zeros(0, 2)  # (M, 2) cells per frame (rows, columns), from its last chunk
        self._descriptors: torch.Tensor | None = None  # (M, E)
        self._next_frame = 0

    @property
    def num_tracks(self) -> int:
        """Tracks the linker currently remembers (seen within the last ``max_gap_frames`` frames)."""
        return int(self._ids.numel())

    def _check(self, trajectory_ids, frame_start, descriptors, num_slots):
        if not isinstance(trajectory_ids, torch.Tensor) or trajectory_ids.ndim != 3:
            raise ValueError(
                "`trajectory_ids` must be a (frames, h, w) integer tensor of one chunk, got "
                f"{getattr(trajectory_ids, 'shape', type(trajectory_ids).__name__)}"
            )
        if trajectory_ids.dtype.is_floating_point or trajectory_ids.dtype == torch.bool or trajectory_ids.is_complex():
            raise TypeError(f"`trajectory_ids` must be an integer tensor, got {trajectory_ids.dtype}")
        if trajectory_ids.numel() == 0:
            raise ValueError(f"`trajectory_ids` must not be empty, got shape {tuple(trajectory_ids.shape)}")
        if isinstance(frame_start, bool) or not isinstance(frame_start, int) or frame_start < self._next_frame:
            raise ValueError(
                f"`frame_start` must be an int >= {self._next_frame} (chunks come in order and do not overlap), "
                f"got {frame_start!r}"
            )
        if num_slots is None:
            num_slots = descriptors.shape[0] if descriptors is not None else int(trajectory_ids.max()) + 1
        if int(trajectory_ids.min()) < 0 or int(trajectory_ids.max()) >= num_slots:
            raise ValueError(f"`trajectory_ids` must lie in [0, {num_slots}) (the chunk's trajectory slots)")
        if descriptors is not None:
            if not isinstance(descriptors, torch.Tensor) or descriptors.ndim != 2 or descriptors.shape[0] != num_slots:
                raise ValueError(
                    f"`descriptors` must be a ({num_slots}, E) tensor, one row per slot, got "
                    f"{getattr(descriptors, 'shape', type(descriptors).__name__)}"
                )
            if self._descriptors is not None and descriptors.shape[1] != self._descriptors.shape[1]:
                raise ValueError(
                    f"`descriptors` have {descriptors.shape[1]} features, earlier chunks had "
                    f"{self._descriptors.shape[1]}"
                )
        elif self.method != "overlap":
            raise ValueError(f"method={self.method!r} needs `descriptors` (one row per trajectory slot)")
        if self._masks is not None and self._masks.shape[1:] != trajectory_ids.shape[1:]:
            raise ValueError(
                f"`trajectory_ids` frames are {tuple(trajectory_ids.shape[1:])}, earlier chunks had "
                f"{tuple(self._masks.shape[1:])}: every chunk of a video must use the same mask grid"
            )
        return num_slots

    def link(
        self,
        trajectory_ids: torch.Tensor,
        frame_start: int,
        descriptors: torch.Tensor | None = None,
        num_slots: int | None = None,
    ) -> ChunkLinks:
        """Link one chunk to the tracks of the chunks before it.

        Args:
            trajectory_ids (`torch.LongTensor` of shape `(t, h, w)`): the chunk's hard mask with chunk-local ids in
                ``[0, num_slots)`` (for [`TrajTokModel`] outputs, ``trajectory_ids % num_trajectories``).
            frame_start (`int`): index in the video of the chunk's first frame (chunks in order, not overlapping).
            descriptors (`torch.FloatTensor` of shape `(num_slots, E)`, *optional*): an appearance descriptor per
                slot; required by the appearance methods, not used by ``"overlap"``.
            num_slots (`int`, *optional*): trajectory slots per chunk (K); default: the descriptors' rows, else the
                largest id + 1.
        """
        num_slots = self._check(trajectory_ids, frame_start, descriptors, num_slots)
        ids = trajectory_ids.detach().to("cpu", torch.long)
        counts = trajectory_presence(ids, num_slots)
        first, last = _first_last(counts > 0)
        active = torch.nonzero(first >= 0).squeeze(1)  # (A,) local slots with pixels
        self._forget(frame_start)
        first_masks = _masks_at(ids, first[active], active)
        if self.method == "overlap":
            descriptors = None  # not used, and not kept
        else:
            descriptors = F.normalize(descriptors.detach().float().cpu(), dim=-1)
        track_of = self._match(
            first_masks, first[active] + frame_start, None if descriptors is None else descriptors[active]
        )
        new = track_of < 0
        new_ids = torch.arange(self.next_id, self.next_id + int(new.sum()))
        self.next_id += int(new.sum())
        slot_ids = torch.full((num_slots,), -1, dtype=torch.long)
        slot_ids[active] = torch.where(new, -1, self._ids[track_of.clamp(min=0)] if self.num_tracks else -1)
        slot_ids[active[new]] = new_ids
        global_map = slot_ids[ids]
        self._update(global_map, slot_ids, active, counts, frame_start, descriptors)
        self._next_frame = frame_start + ids.shape[0]
        return ChunkLinks(
            global_ids=slot_ids,
            trajectory_ids=global_map,
            first_frame=torch.where(first >= 0, first + frame_start, -1),
            last_frame=torch.where(last >= 0, last + frame_start, -1),
            pixel_counts=counts.sum(dim=0),
            new_ids=new_ids.tolist(),
        )

    def _forget(self, frame_start: int) -> None:
        keep = self._last >= frame_start - 1 - self.max_gap_frames
        if not bool(keep.all()):
            self._ids, self._last, self._velocity = self._ids[keep], self._last[keep], self._velocity[keep]
            self._masks = self._masks[keep]
            self._descriptors = None if self._descriptors is None else self._descriptors[keep]

    def _predicted_masks(self, frame: int) -> torch.Tensor:
        """(M, h·w) bool: each track's last mask, moved by its velocity to ``frame`` when motion-compensated."""
        if not self.motion_compensation:
            return self._masks.flatten(1)
        shift = (self._velocity * (frame - self._last).clamp(min=0)[:, None].float()).round().long()  # (M, 2)
        return _shift_masks(self._masks, shift).flatten(1)

    def _match(self, first_masks: torch.Tensor, first_frames: torch.Tensor, descriptors: torch.Tensor | None):
        """(A,) index of the track each active trajectory continues, -1 for none."""
        track_of = torch.full((first_masks.shape[0],), -1, dtype=torch.long)
        if self.num_tracks == 0 or first_masks.shape[0] == 0:
            return track_of
        new_masks = first_masks.float()
        # Each track predicted to the frame where each trajectory starts: one prediction per distinct start frame
        # (a loop over at most the chunk's frames, not over trajectories).
        grid = self._masks.shape[1:]
        starts, start_of = torch.unique(first_frames, return_inverse=True)
        inter = new_masks.new_zeros(new_masks.shape[0], self.num_tracks)
        old_area, old_centres = torch.zeros_like(inter), new_masks.new_zeros(*inter.shape, 2)
        for index, frame in enumerate(starts.tolist()):
            rows = start_of == index
            predicted = self._predicted_masks(frame).float()  # (M, h·w)
            inter[rows] = new_masks[rows] @ predicted.T
            old_area[rows] = predicted.sum(-1)
            old_centres[rows] = _centroids(predicted, grid)
        similarity = None
        if descriptors is not None and self._descriptors is not None:
            similarity = descriptors @ self._descriptors.T  # (A, M)
        continued = torch.zeros(self.num_tracks, dtype=torch.bool)
        if self.method != "appearance":
            union = new_masks.sum(1, keepdim=True) + old_area - inter
            iou = inter / union.clamp(min=1)
            if similarity is not None:
                iou = torch.where(similarity >= self.min_overlap_similarity, iou, 0.0)
            rows, cols = _assign(iou.numpy(), max(self.min_iou, 1e-9))
            track_of[rows] = torch.as_tensor(cols, dtype=torch.long)
            continued[cols] = True
            if self.allow_splits:
                coverage = inter / new_masks.sum(1, keepdim=True).clamp(min=1)
                best, best_track = coverage.max(dim=1)
                split = (track_of < 0) & (best >= self.split_coverage) & (best > 0)
                if similarity is not None:
                    # An object that appears inside another track's area is not a piece of it: it looks different.
                    split &= similarity.gather(1, best_track[:, None]).squeeze(1) >= self.min_similarity
                track_of[split] = best_track[split]
                continued[best_track[split]] = True
        if self.method != "overlap" and similarity is not None:
            open_rows = torch.nonzero(track_of < 0).squeeze(1)
            open_cols = torch.nonzero(~continued).squeeze(1)
            score = similarity[open_rows][:, open_cols]
            if self.max_distance is not None:
                centres = old_centres[open_rows][:, open_cols]  # (a, m, 2)
                diagonal = float(torch.tensor(grid, dtype=torch.float).norm())
                near = (centres - _centroids(new_masks[open_rows], grid)[:, None]).norm(dim=-1) / diagonal
                score = torch.where(near <= self.max_distance, score, -2.0)
            rows, cols = _assign(score.numpy(), self.min_similarity)
            track_of[open_rows[rows]] = open_cols[cols]
        return track_of

    def _update(self, global_map, slot_ids, active, counts, frame_start, descriptors) -> None:
        """Each global id present in the chunk: its mask in its last frame here, that frame, its velocity over the
        chunk and its descriptor."""
        present_ids, slot_group = torch.unique(slot_ids[active], return_inverse=True)  # (G,), (A,)
        groups = present_ids.numel()
        group_counts = torch.zeros(counts.shape[0], groups, dtype=counts.dtype)
        group_counts.index_add_(1, slot_group, counts[:, active])
        first, last = _first_last(group_counts > 0)
        masks = global_map[last] == present_ids[:, None, None]  # (G, h, w)
        first_masks = global_map[first] == present_ids[:, None, None]
        span = (last - first).clamp(min=1).float()[:, None]
        velocity = (
            _centroids(masks.flatten(1).float(), masks.shape[1:])
            - _centroids(first_masks.flatten(1).float(), masks.shape[1:])
        ) / span
        group_descriptors = None
        if descriptors is not None:
            weights = counts[:, active].sum(0).float()
            summed = torch.zeros(groups, descriptors.shape[1])
            summed.index_add_(0, slot_group, descriptors[active] * weights[:, None])
            group_descriptors = F.normalize(summed, dim=-1)
        # Tracks continued here are replaced; the others (lost, within the gap) are kept as they were.
        kept = ~torch.isin(self._ids, present_ids)
        self._ids = torch.cat((self._ids[kept], present_ids))
        self._last = torch.cat((self._last[kept], last + frame_start))
        self._velocity = torch.cat((self._velocity[kept], velocity))
        self._masks = masks if self._masks is None else torch.cat((self._masks[kept], masks))
        if group_descriptors is not None:
            old = self._descriptors[kept] if self._descriptors is not None else group_descriptors[:0]
            self._descriptors = torch.cat((old, group_descriptors))
