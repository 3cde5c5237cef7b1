"""Procedural generator: determinism, ground truth exactness, motion semantics, captions, speed, datasets."""

import ast
import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

from trajtok_hf.data import (
    COLOURS,
    IGNORE_INDEX,
    MOTION_WORDINGS,
    MOTIONS,
    SHAPES,
    SyntheticVideoConfig,
    caption_from_objects,
    downsample_labels,
    generate_clip,
    generate_swapped_clip,
    make_synthetic_dataset,
    motion_kind,
    paraphrase_clip,
    shape_negative_caption,
    swap_motions_caption,
    synthetic,
    transform_clip,
)
from trajtok_hf.data.synthetic import shade

SMALL = dict(num_frames=8, height=64, width=64)


def test_clip_shapes_and_dtypes_at_full_size():
    cfg = SyntheticVideoConfig()
    clip = generate_clip(cfg, seed=0, index=0)
    assert clip["video"].shape == (16, 224, 224, 3) and clip["video"].dtype == np.uint8
    assert clip["segmentation"].shape == (16, 224, 224) and clip["segmentation"].dtype == np.int64
    assert clip["segmentation_labels"].shape == (16, 56, 56) and clip["segmentation_labels"].dtype == np.int64
    assert isinstance(clip["caption"], str) and clip["caption"]
    n = len(clip["objects"])
    assert cfg.min_objects <= n <= cfg.max_objects
    assert [o["id"] for o in clip["objects"]] == list(range(1, n + 1))
    assert set(np.unique(clip["segmentation"])) <= set(range(n + 1))
    for obj in clip["objects"]:
        assert obj["shape"] in SHAPES and obj["colour"] in COLOURS and obj["motion"] in MOTIONS
        assert obj["size"] in ("small", "large") and obj["texture"] in ("plain", "striped", "checkered")


def test_deterministic_by_seed_and_index():
    cfg = SyntheticVideoConfig(**SMALL)
    a, b = generate_clip(cfg, 3, 7), generate_clip(cfg, 3, 7)
    for key in ("video", "segmentation", "segmentation_labels"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["caption"] == b["caption"] and a["objects"] == b["objects"]
    others = [generate_clip(cfg, 3, 8), generate_clip(cfg, 4, 7)]
    assert all(not np.array_equal(a["video"], o["video"]) for o in others)
    # (seed, index) is not "seed + index": seed 3 / index 8 and seed 4 / index 7 are different clips.
    assert not np.array_equal(others[0]["video"], others[1]["video"])


def test_ground_truth_ids_match_rendered_colours():
    cfg = SyntheticVideoConfig(**SMALL, max_objects=4, texture_probability=0.5)
    saw_texture = False
    for index in range(12):
        clip = generate_clip(cfg, 1, index)
        video, seg = clip["video"], clip["segmentation"]
        for obj in clip["objects"]:
            pixels = video[seg == obj["id"]]
            assert len(pixels) > 0
            rgb = np.array(COLOURS[obj["colour"]], dtype=np.uint8)
            if obj["texture"] == "plain":
                assert (pixels == rgb).all(), obj
            else:
                saw_texture = True
                dark = np.array(shade(obj["colour"]), dtype=np.uint8)
                is_rgb, is_dark = (pixels == rgb).all(-1), (pixels == dark).all(-1)
                assert (is_rgb | is_dark).all(), obj
                assert is_rgb.any() and is_dark.any(), obj
            # and no background pixel accidentally has exactly the object's colour where the GT says otherwise
            # (backgrounds are grey-ish; a full-colour match outside the object would mean a GT miss)
            outside = video[seg == 0]
            assert not (outside == rgb).all(-1).any(), obj
    assert saw_texture


def _object(obj_id, shape, colour, cx, cy, radius=10.0, T=4):
    return synthetic._Object(
        id=obj_id,
        shape=shape,
        colour=colour,
        size="large",
        texture="plain",
        motion="static",
        radius=radius,
        cx=np.full(T, float(cx)),
        cy=np.full(T, float(cy)),
        angle=np.zeros(T),
        visible=np.ones(T, dtype=bool),
    )


def test_occlusion_ground_truth_is_the_visible_object():
    T, H, W = 4, 40, 40
    video = np.zeros((T, H, W, 3), dtype=np.uint8)
    seg = np.zeros((T, H, W), dtype=np.uint8)
    back, front = _object(1, "square", "red", 15, 20), _object(2, "circle", "blue", 24, 20)
    synthetic._render_object(video, seg, back)
    synthetic._render_object(video, seg, front)
    only_back = np.zeros_like(seg)
    synthetic._render_object(np.zeros_like(video), only_back, back)
    only_front = np.zeros_like(seg)
    synthetic._render_object(np.zeros_like(video), only_front, front)
    overlap = (only_back == 1) & (only_front == 2)
    assert overlap.sum() > 20
    assert (seg[overlap] == 2).all() and (video[overlap] == COLOURS["blue"]).all()
    visible_back = (only_back == 1) & ~overlap
    assert (seg[visible_back] == 1).all() and (video[visible_back] == COLOURS["red"]).all()


def test_objects_partly_outside_the_frame_are_clipped():
    T, H, W = 2, 32, 32
    video = np.zeros((T, H, W, 3), dtype=np.uint8)
    seg = np.zeros((T, H, W), dtype=np.uint8)
    synthetic._render_object(video, seg, _object(1, "circle", "red", -3, 31, radius=8.0, T=T))
    assert 0 < (seg == 1).sum() < np.pi * 64 * T  # partly visible, no wrap-around / index error
    assert (seg[:, :, W // 2 :] == 0).all()


def _centroids(seg, obj_id):
    out = []
    for frame in seg:
        ys, xs = np.nonzero(frame == obj_id)
        out.append((xs.mean(), ys.mean()) if len(xs) else (np.nan, np.nan))
    return np.array(out)


def _single(motion, shape="square", seed=0):
    cfg = SyntheticVideoConfig(
        num_frames=8,
        height=96,
        width=96,
        min_objects=1,
        max_objects=1,
        shapes=(shape,),
        colours=("red",),
        motions=(motion,),
        textures=(),
        background_pan_probability=0.0,
    )
    clip = generate_clip(cfg, seed, 0)
    return clip, _centroids(clip["segmentation"], 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_motions_do_what_the_caption_says(seed):
    direction = {"move_left": (0, -1), "move_right": (0, 1), "move_up": (1, -1), "move_down": (1, 1)}
    for motion, (axis, sign) in direction.items():
        clip, c = _single(motion, seed=seed)
        assert MOTIONS[motion] in clip["caption"]
        steps = np.diff(c[:, axis])
        assert (np.sign(steps) == sign).all(), (motion, c)
        # atol in pixels (here and below): a rasterised shape's centroid drifts by < 1 px off its motion axis (2 px
        # for a rotating triangle); geometry of integer masks, not float order.
        assert np.allclose(np.diff(c[:, 1 - axis]), 0, atol=1.0)
    _, c = _single("static", seed=seed)
    assert np.array_equal(c, c[0:1].repeat(len(c), 0))  # the same mask in every frame: the same centroid
    for motion in ("rotate_cw", "rotate_ccw"):
        clip, c = _single(motion, shape="triangle", seed=seed)
        masks = clip["segmentation"] == 1
        assert not np.array_equal(masks[0], masks[-1])  # the pose changes ...
        assert np.allclose(c, c[0], atol=2.0)  # ... the position does not
    # enter / exit: absent (or nearly) at one end, fully present at the other
    for side, axis, sign in (("left", 0, 1), ("right", 0, -1), ("top", 1, 1), ("bottom", 1, -1)):
        clip, c = _single(f"enter_{side}", seed=seed)
        area = (clip["segmentation"] == 1).sum(axis=(1, 2))
        assert area[0] == 0 and area[-1] > 0 and (np.sign(np.diff(c[1:, axis])) == sign).all()
        clip, c = _single(f"exit_{side}", seed=seed)
        area = (clip["segmentation"] == 1).sum(axis=(1, 2))
        assert area[0] > 0 and area[-1] == 0 and (np.sign(np.diff(c[:-1, axis])) == -sign).all()
    clip, _ = _single("appear", seed=seed)
    area = (clip["segmentation"] == 1).sum(axis=(1, 2))
    assert area[0] == 0 and area[-1] > 0 and (np.diff((area > 0).astype(int)) >= 0).all()
    clip, _ = _single("disappear", seed=seed)
    area = (clip["segmentation"] == 1).sum(axis=(1, 2))
    assert area[0] > 0 and area[-1] == 0 and (np.diff((area > 0).astype(int)) <= 0).all()


def test_bounce_reverses_direction():
    cfg = SyntheticVideoConfig(
        num_frames=16,
        height=96,
        width=96,
        min_objects=1,
        max_objects=1,
        motions=("bounce",),
        sizes=("small",),
    )
    for index in range(4):
        clip = generate_clip(cfg, 0, index)
        c = _centroids(clip["segmentation"], 1)
        steps = np.diff(c, axis=0)
        flips = [(np.sign(steps[1:, a]) * np.sign(steps[:-1, a]) < 0).any() for a in (0, 1)]
        assert any(flips), c
        assert "bounces around" in clip["caption"]


def test_captions_name_objects_and_differ_with_motion():
    base = dict(
        num_frames=8,
        height=64,
        width=64,
        min_objects=2,
        max_objects=2,
        shapes=("circle",),
        colours=("red", "blue"),
        sizes=("large",),
        textures=(),
    )
    captions = {}
    for motion in ("move_left", "move_right", "move_down", "bounce", "appear"):
        clip = generate_clip(SyntheticVideoConfig(**base, motions=(motion,)), seed=0, index=0)
        captions[motion] = clip["caption"]
        assert {o["colour"] for o in clip["objects"]} == {"red", "blue"}
    assert len(set(captions.values())) == len(captions)
    assert captions["move_left"] in (
        "a large red circle moves left while a large blue circle moves left",
        "a large blue circle moves left while a large red circle moves left",
    )
    # every phrase is distinct, so no two motions can ever share a caption
    assert len(set(MOTIONS.values())) == len(MOTIONS)
    # the caption follows object order and mentions every attribute
    cfg = SyntheticVideoConfig(**SMALL, min_objects=3, max_objects=3, texture_probability=1.0)
    clip = generate_clip(cfg, 5, 0)
    clauses = [
        f"a {o['size']} {o['texture']} {o['colour']} {o['shape']} {MOTIONS[o['motion']]}" for o in clip["objects"]
    ]
    assert clip["caption"] == f"{clauses[0]}, {clauses[1]} and {clauses[2]}"
    with_bg = generate_clip(dataclasses.replace(cfg, caption_background=True), 5, 0)
    assert with_bg["caption"].startswith(clip["caption"] + " on a ")


def test_every_object_is_visible_on_the_mask_grid():
    cfg = SyntheticVideoConfig(**SMALL, max_objects=5, min_visible_cells=4)
    for index in range(10):
        clip = generate_clip(cfg, 2, index)
        counts = np.bincount(clip["segmentation_labels"].ravel(), minlength=len(clip["objects"]) + 1)
        assert (counts[1:] >= 4).all()


@pytest.mark.parametrize("mode", ["mode", "nearest"])
def test_mask_grid_labels_consistent_with_full_resolution(mode):
    cfg = SyntheticVideoConfig(**SMALL, max_objects=4, mask_downsample=mode)
    clip = generate_clip(cfg, 0, 3)
    seg, labels = clip["segmentation"], clip["segmentation_labels"]
    assert labels.shape == (8, 16, 16)
    np.testing.assert_array_equal(labels, downsample_labels(seg, 4, mode))
    if mode == "nearest":
        np.testing.assert_array_equal(labels, seg[:, 2::4, 2::4])
    else:  # each label is a majority of its 4x4 cell
        cells = seg.reshape(8, 16, 4, 16, 4).transpose(0, 1, 3, 2, 4).reshape(8, 16, 16, 16)
        own = (cells == labels[..., None]).sum(-1)
        best = np.stack([(cells == k).sum(-1) for k in range(seg.max() + 1)], -1).max(-1)
        np.testing.assert_array_equal(own, best)


def test_background_can_be_unlabeled():
    cfg = SyntheticVideoConfig(**SMALL)
    labelled = generate_clip(cfg, 0, 0)
    unlabelled = generate_clip(dataclasses.replace(cfg, background_as_trajectory=False), 0, 0)
    np.testing.assert_array_equal(labelled["video"], unlabelled["video"])
    for key in ("segmentation", "segmentation_labels"):
        expected = np.where(labelled[key] == 0, IGNORE_INDEX, labelled[key])
        np.testing.assert_array_equal(unlabelled[key], expected)


def test_single_frame_clips_are_static():
    clip = generate_clip(SyntheticVideoConfig(num_frames=1, height=32, width=32), 0, 0)
    assert clip["video"].shape == (1, 32, 32, 3)
    assert all(o["motion"] == "static" for o in clip["objects"])
    with pytest.raises(ValueError, match="motions"):
        SyntheticVideoConfig(num_frames=1, motions=("move_left",))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_frames=0), "num_frames"),
        (dict(height=30), "mask_stride"),
        (dict(min_objects=3, max_objects=2), "min_objects"),
        (dict(max_objects=10), "max_objects"),
        (dict(shapes=("circle", "blob")), "shapes"),
        (dict(motions="static"), "motions"),
        (dict(colours=()), "colours"),
        (dict(texture_probability=1.5), "texture_probability"),
        (dict(same_kind_motion_probability=-0.1), "same_kind_motion_probability"),
        (dict(same_kind_motion_probability="often"), "same_kind_motion_probability"),
        (dict(mask_downsample="mean"), "mask_downsample"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SyntheticVideoConfig(**kwargs)


def test_config_rejects_unknown_keys_and_bad_call_arguments():
    with pytest.raises(TypeError):
        SyntheticVideoConfig(num_frame=8)  # misspelt
    with pytest.raises(ValueError, match="seed"):
        generate_clip(SyntheticVideoConfig(**SMALL), seed=-1)
    with pytest.raises(TypeError, match="config"):
        generate_clip({"num_frames": 8})


def test_throughput_at_16x224x224():
    cfg = SyntheticVideoConfig()
    generate_clip(cfg, 0, 0)  # warm-up
    n = 40
    start = time.perf_counter()
    for index in range(n):
        generate_clip(cfg, 123, index)
    rate = n / (time.perf_counter() - start)
    print(f"\nsynthetic generator: {rate:.1f} clips/s at 16x224x224 (single process)")
    assert rate >= 10  # loose on purpose: ~150-200 clips/s here, CI machines vary


def test_make_synthetic_dataset_rows_equal_generate_clip(tmp_path):
    import datasets

    cfg = SyntheticVideoConfig(**SMALL)
    ds = make_synthetic_dataset(3, cfg, seed=5, cache_dir=tmp_path, with_segmentation=True)
    assert isinstance(ds, datasets.Dataset) and len(ds) == 3
    assert ds.features["video"].dtype == "uint8" and ds.features["video"].shape == (8, 64, 64, 3)
    assert ds.features["segmentation_labels"].dtype == "int64"
    for i in range(3):
        row, clip = ds[i], generate_clip(cfg, 5, i)
        assert isinstance(row["video"], np.ndarray) and row["video"].dtype == np.uint8
        np.testing.assert_array_equal(row["video"], clip["video"])
        np.testing.assert_array_equal(row["segmentation_labels"], clip["segmentation_labels"])
        np.testing.assert_array_equal(row["segmentation"], clip["segmentation"])
        assert row["caption"] == clip["caption"] and row["objects"] == clip["objects"]
        assert row["index"] == i and row["seed"] == 5
    # same arguments -> same cached dataset; another seed -> different clips
    again = make_synthetic_dataset(3, cfg, seed=5, cache_dir=tmp_path, with_segmentation=True)
    assert again._fingerprint == ds._fingerprint
    other = make_synthetic_dataset(3, cfg, seed=6, cache_dir=tmp_path)
    assert other._fingerprint != ds._fingerprint and "segmentation" not in other.column_names
    with pytest.raises(ValueError, match="num_clips"):
        make_synthetic_dataset(0, cfg)


def test_streaming_dataset_renders_on_the_fly():
    import datasets

    cfg = SyntheticVideoConfig(**SMALL)
    ds = make_synthetic_dataset(3, cfg, seed=2, streaming=True)
    assert isinstance(ds, datasets.IterableDataset)
    rows = list(ds)
    assert [r["index"] for r in rows] == [0, 1, 2]
    for row in rows:
        clip = generate_clip(cfg, 2, row["index"])
        assert np.asarray(row["video"]).dtype == np.uint8
        np.testing.assert_array_equal(row["video"], clip["video"])
        np.testing.assert_array_equal(row["segmentation_labels"], clip["segmentation_labels"])


# The one module of trajtok_hf.models that the data package may use: the PyAV decoder that the video processor and
# the video folders share. It lives in models/ because a saved model's remote code carries it; it imports no model.
SHARED_DECODER = "video_io_trajtok"


def _package_imports(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            modules.append(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
    return modules


def test_data_package_does_not_import_models():
    package = Path(synthetic.__file__).parent
    for path in package.glob("*.py"):
        for module in _package_imports(path):
            if module.endswith(f"models.{SHARED_DECODER}"):
                continue
            assert "models" not in module, f"{path.name} imports {module}"
    decoder = package.parent / "models" / f"{SHARED_DECODER}.py"
    assert not [m for m in _package_imports(decoder) if m.startswith(".") or "trajtok_hf" in m]


@pytest.mark.parametrize("caption_background", [False, True])
def test_caption_from_objects_reproduces_the_generators_captions(caption_background):
    from trajtok_hf.data import caption_from_objects

    config = SyntheticVideoConfig(
        num_frames=2, height=64, width=64, max_objects=4, caption_background=caption_background
    )
    for index in range(60):
        clip = generate_clip(config, 3, index)
        background = clip["background"] if caption_background else None
        assert caption_from_objects(clip["objects"], background) == clip["caption"]


@pytest.mark.parametrize("table_name", ["DIRECTION_FLIPS", "TIME_REVERSALS"])
def test_motion_maps_are_involutions_over_known_motions(table_name):
    import trajtok_hf.data as data

    table = getattr(data, table_name)
    assert set(table) <= set(data.MOTIONS)
    assert all(table[table[motion]] == motion for motion in table)
    assert set(data.TIME_REVERSALS) == set(data.MOTIONS)  # every motion has a time reversal


def test_motion_wordings_are_five_distinct_paraphrases_that_mirror():
    from trajtok_hf.data import DIRECTION_FLIPS, MOTION_WORDINGS, MOTIONS, TIME_REVERSALS

    assert set(MOTION_WORDINGS) == set(MOTIONS)
    for motion, wordings in MOTION_WORDINGS.items():
        assert wordings[0] == MOTIONS[motion] and len(set(wordings)) == len(wordings) >= 5
    for table in (DIRECTION_FLIPS, TIME_REVERSALS):  # a flipped motion keeps its wording's position, new words
        for motion, other in table.items():
            if motion != other:
                assert all(a != b for a, b in zip(MOTION_WORDINGS[motion], MOTION_WORDINGS[other], strict=True))


def _held_out_phrases():
    from trajtok_hf.data import CLAUSE_TEMPLATES, MOTION_WORDINGS, SHAPE_WORDS

    return (
        {wordings[-1] for wordings in MOTION_WORDINGS.values()}
        | {f" {held} " for _, held in SHAPE_WORDS.values()}
        | {CLAUSE_TEMPLATES[-1][0].split("{}")[1]}
    )


def test_caption_wordings_keep_the_video_and_hold_out_a_fifth_of_the_wordings():
    from trajtok_hf.data import caption_from_objects

    configs = {
        mode: SyntheticVideoConfig(num_frames=4, height=64, width=64, caption_wording=mode)
        for mode in ("fixed", "train", "held_out")
    }
    held_out_phrases = _held_out_phrases()
    train_captions = set()
    for index in range(80):
        clips = {mode: generate_clip(config, 9, index) for mode, config in configs.items()}
        assert all(np.array_equal(clip["video"], clips["fixed"]["video"]) for clip in clips.values())
        for mode in ("train", "held_out"):
            clip = clips[mode]
            assert caption_from_objects(clip["objects"], None, clip["caption_template"]) == clip["caption"]
        train = clips["train"]["caption"] + " "
        assert not any(phrase in train for phrase in held_out_phrases), train
        assert all(obj["wording"] == 4 for obj in clips["held_out"]["objects"])
        train_captions.add(clips["train"]["caption"])
    assert len(train_captions) == 80  # paraphrases vary


def test_caption_wording_is_checked():
    with pytest.raises(ValueError, match="caption_wording"):
        SyntheticVideoConfig(caption_wording="paraphrase")


def test_paraphrased_dataset_rows(tmp_path):
    pytest.importorskip("datasets")
    config = SyntheticVideoConfig(num_frames=2, height=32, width=32, max_objects=2, caption_wording="train")
    dataset = make_synthetic_dataset(2, config, seed=1, cache_dir=tmp_path)
    row = dataset[0]
    assert row["caption"] == generate_clip(config, 1, 0)["caption"] and "caption_template" in row
    assert {"wording", "shape_word"} <= set(row["objects"][0])


@pytest.mark.parametrize(
    "objects, template, match",
    [
        ([], 0, "at least one object"),
        ([{"shape": "circle", "colour": "red", "size": "small", "texture": "plain"}], 0, "missing \\['motion'\\]"),
        ([{"shape": "circle", "colour": "red", "size": "small", "texture": "plain", "motion": "fly"}], 0, "fly"),
        (
            [{"shape": "circle", "colour": "red", "size": "small", "texture": "plain", "motion": "rise", "wording": 9}],
            0,
            "unknown motion",
        ),
        (
            [{"shape": "circle", "colour": "red", "size": "small", "texture": "plain", "motion": "static"}],
            7,
            "template",
        ),
    ],
)
def test_caption_from_objects_rejects_bad_metadata(objects, template, match):
    from trajtok_hf.data import caption_from_objects

    with pytest.raises(ValueError, match=match):
        caption_from_objects(objects, None, template)


@pytest.mark.parametrize(
    "transform, motion, expected, flip",
    [
        ("reverse", "enter_left", "exit_left", lambda a: a[::-1]),
        ("reverse", "appear", "disappear", lambda a: a[::-1]),
        ("mirror_horizontal", "move_left", "move_right", lambda a: a[:, :, ::-1]),
        ("mirror_horizontal", "move_up", "move_up", lambda a: a[:, :, ::-1]),
        ("mirror_vertical", "move_up", "move_down", lambda a: a[:, ::-1]),
        ("mirror_vertical", "rotate_cw", "rotate_ccw", lambda a: a[:, ::-1]),
    ],
)
def test_transformed_clips_show_what_their_caption_says(transform, motion, expected, flip):
    config = SyntheticVideoConfig(num_frames=6, height=64, width=64, max_objects=1, motions=(motion,))
    clip = generate_clip(config, seed=3, index=0)
    out = transform_clip(clip, transform)
    assert out["objects"][0]["motion"] == expected
    assert MOTIONS[expected] in out["caption"]
    for key in ("video", "segmentation", "segmentation_labels"):
        assert np.array_equal(out[key], flip(clip[key]))
    # The transformed clip moves as its caption says: the object's centre follows the mapped motion.
    if expected in ("move_right", "move_down"):
        ys, xs = np.nonzero(out["segmentation"][0] == 1)
        ye, xe = np.nonzero(out["segmentation"][-1] == 1)
        axis_start, axis_end = (xs.mean(), xe.mean()) if expected == "move_right" else (ys.mean(), ye.mean())
        assert axis_end > axis_start
    assert clip["objects"][0]["motion"] == motion  # the original is left as it was


def test_transformed_captions_keep_the_paraphrase_and_the_background_clause():
    config = SyntheticVideoConfig(
        num_frames=4, height=64, width=64, motions=("move_left",), caption_wording="train", caption_background=True
    )
    clip = generate_clip(config, seed=1, index=2)
    clip["background"] = {"kind": "noise", "pan": "left"}
    out = transform_clip(clip, "mirror_horizontal", caption_background=True)
    wording = clip["objects"][0]["wording"]
    assert MOTION_WORDINGS["move_right"][wording] in out["caption"]
    assert out["caption"].endswith("drifting right")
    with pytest.raises(ValueError, match="transform"):
        transform_clip(clip, "rotate")


def test_swap_motions_caption_exchanges_the_first_two_objects_motions_in_the_clips_wording():
    config = SyntheticVideoConfig(
        num_frames=4, height=64, width=64, min_objects=3, max_objects=3, caption_wording="train"
    )
    clip = next(
        c
        for c in (generate_clip(config, seed=5, index=i) for i in range(20))
        if c["objects"][0]["motion"] != c["objects"][1]["motion"]
    )
    swapped = swap_motions_caption(clip)
    objects = [dict(o) for o in clip["objects"]]
    objects[0]["motion"], objects[1]["motion"] = clip["objects"][1]["motion"], clip["objects"][0]["motion"]
    assert swapped == caption_from_objects(objects, None, clip["caption_template"]) and swapped != clip["caption"]
    assert clip["objects"][0]["motion"] != objects[0]["motion"]  # the clip itself is left as it was
    with_background = swap_motions_caption({**clip, "background": {"kind": "noise", "pan": "left"}}, True)
    assert with_background.endswith("on a noise background drifting left")


def test_swap_motions_caption_is_none_without_two_different_motions():
    one = generate_clip(SyntheticVideoConfig(num_frames=4, height=64, width=64, max_objects=1), seed=0, index=0)
    assert swap_motions_caption(one) is None
    alike = SyntheticVideoConfig(num_frames=4, height=64, width=64, min_objects=2, max_objects=2, motions=("move_up",))
    assert swap_motions_caption(generate_clip(alike, seed=0, index=0)) is None
    with pytest.raises(ValueError, match="objects"):
        swap_motions_caption({"caption": "a clip"})


MOTION_KIND_CASES = {
    "static": "static",
    "move_left": "move",
    "move_up": "move",
    "bounce": "bounce",
    "rotate_ccw": "rotate",
    "enter_bottom": "enter",
    "exit_left": "exit",
    "appear": "appear",
    "disappear": "disappear",
}


@pytest.mark.parametrize("motion", MOTION_KIND_CASES)
def test_motion_kind(motion):
    assert motion_kind(motion) == MOTION_KIND_CASES[motion]


def test_motion_kinds_partition_the_motions():
    kinds = {motion_kind(m) for m in MOTIONS}
    assert kinds == {"static", "move", "bounce", "rotate", "enter", "exit", "appear", "disappear"}
    with pytest.raises(ValueError, match="motion"):
        motion_kind("spin")


def test_the_default_random_stream_is_pinned():
    """Held-out evaluations and shipped results depend on these exact clips (seed 0 of the 64² config)."""
    captions = [generate_clip(SyntheticVideoConfig(**SMALL), seed=0, index=i)["caption"] for i in range(4)]
    assert captions == [
        "a small green triangle falls",
        "a small pink triangle rotates clockwise, a large white triangle moves right and a small green cross enters "
        "from the top",
        "a small purple triangle appears while a small red square falls",
        "a small white cross rises",
    ]


def _swappable(config, seed=3, count=60):
    """(clip, swapped copy) for the indices of ``seed`` whose copy exists."""
    pairs = ((generate_clip(config, seed, i), generate_swapped_clip(config, seed, i)) for i in range(count))
    return [(clip, swapped) for clip, swapped in pairs if swapped is not None]


def _centroids(segmentation, label):
    """Per frame: the mean (x, y) of the pixels of ``label`` (NaN where it has none)."""
    mask = segmentation == label
    count = mask.sum(axis=(1, 2))
    ys, xs = np.indices(mask.shape[1:])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([(mask * xs).sum(axis=(1, 2)) / count, (mask * ys).sum(axis=(1, 2)) / count], axis=1)


@pytest.mark.parametrize("wording, shuffle", [("fixed", False), ("train", False), ("held_out", False), ("train", True)])
def test_swapped_clip_binds_each_motion_to_the_other_object(wording, shuffle):
    config = SyntheticVideoConfig(
        **SMALL, min_objects=2, max_objects=3, caption_wording=wording, shuffle_clauses=shuffle
    )
    pairs = _swappable(config)
    assert len(pairs) >= 20
    for clip, swapped in pairs:
        first, second = clip["objects"][:2]
        new_first, new_second = swapped["objects"][:2]
        assert (new_first["motion"], new_second["motion"]) == (second["motion"], first["motion"])
        for old, new in zip(clip["objects"], swapped["objects"], strict=True):  # appearance and order stay
            assert {k: old[k] for k in ("id", "shape", "colour", "size", "texture")} == {
                k: new[k] for k in ("id", "shape", "colour", "size", "texture")
            }
        # without occlusion facts the copy's caption is exactly the clip's object-swapped caption
        assert swapped["caption"] == swap_motions_caption(clip) != clip["caption"]
        # the background is the clip's wherever neither shows an object
        free = (clip["segmentation"] == IGNORE_INDEX) & (swapped["segmentation"] == IGNORE_INDEX)
        assert np.array_equal(clip["video"][free], swapped["video"][free])
        assert swapped["swapped_from"] == (3, clip["index"]) and swapped["index"] == clip["index"]
    again = generate_swapped_clip(config, 3, pairs[0][0]["index"])
    assert again["caption"] == pairs[0][1]["caption"] and np.array_equal(again["video"], pairs[0][1]["video"])


def test_swapped_clip_moves_each_object_along_the_others_path():
    config = SyntheticVideoConfig(
        **SMALL, min_objects=2, max_objects=2, motions=("move_left", "move_up", "static", "bounce"), sizes=("small",)
    )
    checked = 0
    for clip, swapped in _swappable(config, seed=7):
        for old_id, new_id in ((2, 1), (1, 2)):
            before, after = _centroids(clip["segmentation"], old_id), _centroids(swapped["segmentation"], new_id)
            # frames where neither object touches the other in either clip: the centroid follows the path
            alone = (
                np.isfinite(before).all(axis=1)
                & np.isfinite(after).all(axis=1)
                & ((clip["segmentation"] == old_id).sum(axis=(1, 2)) > 8)
            )
            if alone.sum() >= 4:
                # different shapes of one size class: their pixel centroids sit within a radius of the centre
                assert np.abs(before[alone] - after[alone]).mean() < 0.08 * 64
                checked += 1
    assert checked >= 10


def test_swapped_exits_and_entries_end_out_of_view_for_a_larger_object():
    config = SyntheticVideoConfig(
        **SMALL,
        min_objects=2,
        max_objects=2,
        motions=("exit_left", "exit_bottom", "enter_right", "enter_top", "static"),
        min_visible_cells=1,
    )
    seen = 0
    for _, swapped in _swappable(config, seed=11, count=80):
        for obj in swapped["objects"]:
            frame = -1 if obj["motion"].startswith("exit_") else 0 if obj["motion"].startswith("enter_") else None
            if frame is not None:
                assert not (swapped["segmentation"][frame] == obj["id"]).any(), obj
                seen += 1
    assert seen >= 20


def test_swapped_clip_keeps_speed_with_its_path_and_recomputes_occlusion():
    config = SyntheticVideoConfig(
        **SMALL, min_objects=2, max_objects=3, caption_speed=True, caption_occlusion=True, caption_wording="train"
    )
    pairs = _swappable(config, seed=5, count=80)
    for clip, swapped in pairs:
        assert swapped["objects"][0].get("speed") == clip["objects"][1].get("speed")
        assert swapped["objects"][1].get("speed") == clip["objects"][0].get("speed")
        assert swapped["caption"] == caption_from_objects(swapped["objects"], None, clip["caption_template"])
    # occlusion is what the new rendering shows: it differs from the clip's for some pairs
    assert any(
        [o.get("in_front_of") for o in c["objects"]] != [o.get("in_front_of") for o in s["objects"]] for c, s in pairs
    )


def test_swapped_clip_is_none_where_no_swap_can_be_shown():
    one = SyntheticVideoConfig(**SMALL, max_objects=1)
    assert generate_swapped_clip(one, 0, 0) is None
    alike = SyntheticVideoConfig(**SMALL, min_objects=2, max_objects=2, motions=("move_up",))
    assert generate_swapped_clip(alike, 0, 0) is None
    # a plain circle cannot show a rotation: taking a rotating object's path gives no copy
    round_and_turning = SyntheticVideoConfig(
        **SMALL, min_objects=2, max_objects=2, motions=("rotate_cw", "static"), shapes=("circle", "square"), textures=()
    )
    clips = [generate_clip(round_and_turning, 0, i) for i in range(40)]
    blocked = [
        c["index"]
        for c in clips
        if {c["objects"][0]["motion"], c["objects"][1]["motion"]} == {"rotate_cw", "static"}
        and any(o["shape"] == "circle" and o["motion"] == "static" for o in c["objects"][:2])
    ]
    assert blocked and all(generate_swapped_clip(round_and_turning, 0, i) is None for i in blocked)
    with pytest.raises(TypeError, match="SyntheticVideoConfig"):
        generate_swapped_clip({"num_frames": 4}, 0, 0)
    with pytest.raises(ValueError, match="seed"):
        generate_swapped_clip(one, -1, 0)


@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_same_kind_motions(probability):
    config = SyntheticVideoConfig(**SMALL, min_objects=3, max_objects=3, same_kind_motion_probability=probability)
    clips = [generate_clip(config, seed=9, index=i) for i in range(40)]
    directed = [c for c in clips if motion_kind(c["objects"][0]["motion"]) in ("move", "rotate", "enter", "exit")]
    alike = [
        all(
            motion_kind(o["motion"]) == motion_kind(c["objects"][0]["motion"])
            and o["motion"] != c["objects"][0]["motion"]
            for o in c["objects"][1:]
        )
        for c in directed
    ]
    assert len(directed) >= 20
    if probability:
        assert all(alike)
        # Such clips are the hard swap negatives: the swapped caption only moves two direction words.
        assert all(swap_motions_caption(c) not in (None, c["caption"]) for c in directed)
    else:
        assert sum(alike) <= len(alike) // 4


@pytest.mark.parametrize("wording, word", [("fixed", 0), ("train", 0), ("held_out", 1)])
def test_shape_negative_caption_changes_one_shape_in_the_clips_wording(wording, word):
    from trajtok_hf.data import SHAPE_WORDS

    config = SyntheticVideoConfig(**SMALL, min_objects=2, max_objects=3, caption_wording=wording)
    for index in range(6):
        clip = generate_clip(config, seed=3, index=index)
        negative = shape_negative_caption(clip, np.random.default_rng(index))
        assert negative != clip["caption"]
        # the same clip with the drawn object's shape changed, in the clip's own shape vocabulary
        rng = np.random.default_rng(index)
        k = int(rng.integers(len(clip["objects"])))
        others = [s for s in SHAPES if s != clip["objects"][k]["shape"]]
        new = others[int(rng.integers(len(others)))]
        objects = [dict(o) for o in clip["objects"]]
        objects[k]["shape"] = new
        if "shape_word" in objects[k]:
            objects[k]["shape_word"] = SHAPE_WORDS[new][word]
        assert negative == caption_from_objects(objects, None, clip.get("caption_template", 0))
        assert SHAPE_WORDS[new][word] in negative
        # same draw, same negative
        assert shape_negative_caption(clip, np.random.default_rng(index)) == negative


def test_shape_negative_caption_without_another_shape_or_with_bad_input():
    config = SyntheticVideoConfig(**SMALL, shapes=("square",))
    clip = generate_clip(config, seed=0, index=0)
    assert shape_negative_caption(clip, np.random.default_rng(0), shapes=("square",)) is None
    with_background = shape_negative_caption(
        {**clip, "background": {"kind": "noise", "pan": "none"}}, np.random.default_rng(0), True
    )
    assert with_background.endswith("on a noise background")
    with pytest.raises(ValueError, match="objects"):
        shape_negative_caption({"caption": "a clip"}, np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        shape_negative_caption(clip, 0)


@pytest.mark.parametrize("wording", ["fixed", "train", "held_out"])
def test_paraphrase_clip_says_the_same_facts_in_another_training_wording(wording):
    from trajtok_hf.data import CLAUSE_TEMPLATES, MOTION_WORDINGS, SHAPE_WORDS

    config = SyntheticVideoConfig(**SMALL, min_objects=2, max_objects=3, caption_wording=wording)
    for index in range(8):
        clip = generate_clip(config, seed=5, index=index)
        paraphrase = paraphrase_clip(clip, np.random.default_rng(index))
        assert paraphrase["caption"] != clip["caption"]
        assert paraphrase["video"] is clip["video"]  # the same clip, only the words change
        own_template = clip.get("caption_template", 0)
        assert paraphrase["caption_template"] not in (own_template, len(CLAUSE_TEMPLATES) - 1)
        for obj, new in zip(clip["objects"], paraphrase["objects"], strict=True):
            assert {k: v for k, v in new.items() if k not in ("wording", "shape_word")} == {
                k: v for k, v in obj.items() if k not in ("wording", "shape_word")
            }
            # another training wording: never its own, never the held-out last one; the training shape word
            assert new["wording"] not in (obj.get("wording", 0), len(MOTION_WORDINGS[obj["motion"]]) - 1)
            assert new["shape_word"] == SHAPE_WORDS[obj["shape"]][0]
        assert paraphrase["caption"] == caption_from_objects(
            paraphrase["objects"], None, paraphrase["caption_template"]
        )
        assert paraphrase_clip(clip, np.random.default_rng(index))["caption"] == paraphrase["caption"]
        swapped = swap_motions_caption(paraphrase)
        if swap_motions_caption(clip) is not None:
            assert swapped not in (None, paraphrase["caption"])


def test_paraphrase_clip_background_and_bad_input():
    clip = generate_clip(SyntheticVideoConfig(**SMALL, caption_wording="train"), seed=0, index=0)
    background = {"kind": "noise", "pan": "left"}
    paraphrase = paraphrase_clip({**clip, "background": background}, np.random.default_rng(0), True)
    assert paraphrase["caption"].endswith("on a noise background drifting left")
    with pytest.raises(ValueError, match="objects"):
        paraphrase_clip({"caption": "a clip"}, np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        paraphrase_clip(clip, 0)


# --------------------------------------------------------------------------------------------------------------
# Speed and occlusion in the captions


@pytest.mark.parametrize("wording, index", [("fixed", 0), ("held_out", -1)])
def test_caption_speed_draws_two_speeds_and_says_which(wording, index):
    from trajtok_hf.data import SPEED_WORDINGS

    config = SyntheticVideoConfig(**SMALL, max_objects=1, caption_wording=wording, caption_speed=True)
    speeds = []
    for i in range(60):
        clip = generate_clip(config, seed=11, index=i)
        (obj,) = clip["objects"]
        if not obj["motion"].startswith("move_"):
            assert "speed" not in obj
            continue
        # the object's travel over the clip, from its exact pixels (one object: nothing hides it)
        axis = 2 if obj["motion"] in ("move_left", "move_right") else 1
        first, last = (np.argwhere(clip["segmentation"][t] == 1).mean(axis=0)[axis - 1] for t in (0, -1))
        travel = abs(last - first) / clip["segmentation"].shape[axis]
        assert travel >= 0.4 if obj["speed"] == "quickly" else travel <= 0.35
        assert clip["caption"].endswith(" " + SPEED_WORDINGS[obj["speed"]][index])
        speeds.append(obj["speed"])
    assert {"slowly", "quickly"} == set(speeds) and min(speeds.count("slowly"), speeds.count("quickly")) >= 4


def test_caption_facts_leave_other_configs_unchanged():
    plain = generate_clip(SyntheticVideoConfig(**SMALL), seed=3, index=5)
    occluded = generate_clip(SyntheticVideoConfig(**SMALL, caption_occlusion=True), seed=3, index=5)
    assert all("speed" not in obj and "in_front_of" not in obj for obj in plain["objects"])
    np.testing.assert_array_equal(plain["video"], occluded["video"])  # occlusion words do not change the video
    for obj in occluded["objects"]:
        assert all(other < obj["id"] for other in obj["in_front_of"])  # z-order: later objects cover earlier ones
    with pytest.raises(TypeError, match="caption_speed` must be a bool"):
        SyntheticVideoConfig(**SMALL, caption_speed=1)


def test_caption_occlusion_names_the_covered_objects():
    config = SyntheticVideoConfig(**SMALL, min_objects=2, max_objects=3, caption_occlusion=True)
    clips = [generate_clip(config, seed=4, index=i) for i in range(40)]
    covering = [(clip, obj) for clip in clips for obj in clip["objects"] if obj["in_front_of"]]
    assert len(covering) >= 5
    for clip, obj in covering:
        by_id = {o["id"]: o for o in clip["objects"]}
        names = " and ".join(f"the {by_id[j]['colour']} {by_id[j]['shape']}" for j in obj["in_front_of"])
        assert f"{obj['colour']} {obj['shape']} {MOTIONS[obj['motion']]}, in front of {names}" in clip["caption"]


def test_render_object_counts_the_pixels_it_covers():
    from trajtok_hf.data.synthetic import _Object, _render_object

    def square(obj_id, x):
        ones = np.ones(2)
        return _Object(obj_id, "square", "red", "large", "plain", "static", 4.0, x * ones, 10.0 * ones, 0 * ones,
                       np.ones(2, dtype=bool))  # fmt: skip

    video, seg = np.zeros((2, 20, 20, 3), np.uint8), np.zeros((2, 20, 20), np.uint8)
    _render_object(video, seg, square(1, 8.0))
    first = int((seg == 1).sum())
    covered = np.zeros(3, dtype=np.int64)
    _render_object(video, seg, square(2, 10.0), covered)
    assert covered[1] == first - int((seg == 1).sum()) > 0 and covered[2] == 0
    apart = np.zeros(3, dtype=np.int64)
    _render_object(video, seg, square(2, 100.0), apart)  # off the frame: covers nothing
    assert not apart.any()


CAPTION_FACT_CASES = {
    "speed": ({"speed": "quickly"}, {}, "a small red circle moves left quickly while a small blue star rises"),
    "speed, train wording": (
        {"speed": "slowly", "wording": 2},
        {"wording": 1},
        "a small red circle travels leftward unhurriedly while a small blue star moves up",
    ),
    "occlusion": (
        {},
        {"in_front_of": [1]},
        "a small red circle moves left while a small blue star rises, in front of the red circle",
    ),
    "occlusion, held-out words": (
        {"shape_word": "disc", "wording": 4},
        {"in_front_of": [1], "wording": 4},
        "a small red disc drifts to the left while a small blue star floats upward, hiding part of the red disc",
    ),
}


@pytest.mark.parametrize("case", CAPTION_FACT_CASES)
def test_caption_from_objects_with_speed_and_occlusion(case):
    first, second, expected = CAPTION_FACT_CASES[case]
    objects = [
        {"id": 1, "shape": "circle", "colour": "red", "size": "small", "texture": "plain", "motion": "move_left"},
        {"id": 2, "shape": "star", "colour": "blue", "size": "small", "texture": "plain", "motion": "move_up"},
    ]
    objects[0].update(first)
    objects[1].update(second)
    assert caption_from_objects(objects) == expected


def test_swap_moves_the_speed_with_the_motion_and_bad_facts():
    objects = [
        {"id": 1, "shape": "circle", "colour": "red", "size": "small", "texture": "plain", "motion": "move_left"},
        {"id": 2, "shape": "star", "colour": "blue", "size": "small", "texture": "plain", "motion": "rotate_cw"},
    ]
    objects[0]["speed"] = "quickly"
    swapped = swap_motions_caption({"objects": objects})
    assert swapped == "a small red circle rotates clockwise while a small blue star moves left quickly"
    with pytest.raises(ValueError, match="unknown speed"):
        caption_from_objects([{**objects[0], "speed": "fast"}])
    with pytest.raises(ValueError, match="in_front_of"):
        caption_from_objects([{**objects[0], "in_front_of": [7]}])


def test_fact_negative_caption_turns_one_fact_around():
    from trajtok_hf.data import fact_negative_caption, flipped_speeds, reversed_occlusions

    objects = [
        {"id": 1, "shape": "circle", "colour": "red", "size": "small", "texture": "plain", "motion": "move_left"},
        {"id": 2, "shape": "star", "colour": "blue", "size": "small", "texture": "plain", "motion": "static"},
    ]
    speed = [{**objects[0], "speed": "slowly"}, objects[1]]
    both = [speed[0], {**objects[1], "in_front_of": [1]}]
    assert [o.get("speed") for o in flipped_speeds(speed)] == ["quickly", None]
    assert [o["in_front_of"] for o in reversed_occlusions(both)] == [[2], []]
    assert fact_negative_caption({"objects": objects}, np.random.default_rng(0)) is None  # no fact to turn around
    assert fact_negative_caption({"objects": speed}, np.random.default_rng(0)) == (
        "a small red circle moves left quickly while a small blue star stays still"
    )
    drawn = {fact_negative_caption({"objects": both}, np.random.default_rng(seed)) for seed in range(20)}
    assert drawn == {
        "a small red circle moves left quickly while a small blue star stays still, in front of the red circle",
        "a small red circle moves left slowly, in front of the blue star while a small blue star stays still",
    }
    with pytest.raises(ValueError, match="objects"):
        fact_negative_caption({"caption": "a clip"}, np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        fact_negative_caption({"objects": speed}, 0)
    with pytest.raises(ValueError, match="unknown speeds"):
        flipped_speeds([{**objects[0], "speed": "fast"}])
    with pytest.raises(ValueError, match="need an `id`"):
        reversed_occlusions([{k: v for k, v in objects[0].items() if k != "id"}])
    with pytest.raises(ValueError, match="names id 9"):
        reversed_occlusions([{**objects[0], "in_front_of": [9]}])


@pytest.mark.parametrize("wording", ["fixed", "train", "held_out"])
def test_shuffle_clauses_names_the_objects_in_a_random_order(wording):
    from trajtok_hf.data import paraphrase_clip

    base = dict(**SMALL, min_objects=3, max_objects=3, caption_wording=wording, caption_occlusion=True)
    shuffled_config = SyntheticVideoConfig(**base, shuffle_clauses=True)
    first_named = []
    for i in range(12):
        plain, shuffled = generate_clip(SyntheticVideoConfig(**base), 5, i), generate_clip(shuffled_config, 5, i)
        np.testing.assert_array_equal(plain["video"], shuffled["video"])  # its own random stream
        ranks = [obj["caption_rank"] for obj in shuffled["objects"]]
        assert sorted(ranks) == [0, 1, 2]
        # the same clauses, reordered by caption_rank; the painting order stays the order of `objects`
        assert [obj["id"] for obj in shuffled["objects"]] == [1, 2, 3]
        in_order = sorted(shuffled["objects"], key=lambda obj: obj["caption_rank"])
        assert shuffled["caption"] == caption_from_objects(
            [{k: v for k, v in obj.items() if k != "caption_rank"} for obj in in_order],
            None,
            shuffled.get("caption_template", 0),
        )
        first_named.append(in_order[0]["id"])
        # captions rebuilt from the objects keep the order: a transform, a swap, a paraphrase
        reversed_clip = transform_clip(shuffled, "reverse")
        assert [o["caption_rank"] for o in reversed_clip["objects"]] == ranks
        paraphrase = paraphrase_clip(shuffled, np.random.default_rng(i))
        assert paraphrase["caption"].index(in_order[0]["colour"]) < paraphrase["caption"].index(in_order[2]["colour"])
    assert len(set(first_named)) == 3  # each object comes first in some clip


@pytest.mark.parametrize(
    "ranks, match",
    [
        ([0, 0], "permutation of 0..1"),
        ([0, None], "every object or for none"),
        ([1, 2], "permutation"),
        ([0, True], "permutation"),
    ],
)
def test_caption_rank_must_be_a_permutation(ranks, match):
    objects = [
        {"id": j + 1, "shape": "circle", "colour": c, "size": "small", "texture": "plain", "motion": "static"}
        for j, c in enumerate(("red", "blue"))
    ]
    for obj, rank in zip(objects, ranks, strict=True):
        obj["caption_rank"] = rank
    with pytest.raises(ValueError, match=match):
        caption_from_objects(objects)
    objects[0]["caption_rank"], objects[1]["caption_rank"] = 1, 0
    assert caption_from_objects(objects) == "a small blue circle stays still while a small red circle stays still"
    with pytest.raises(TypeError, match="shuffle_clauses` must be a bool"):
        SyntheticVideoConfig(**SMALL, shuffle_clauses="yes")


def test_dataset_rows_keep_speed_occlusion_and_caption_rank(tmp_path):
    config = SyntheticVideoConfig(
        **SMALL, max_objects=3, caption_wording="train", caption_speed=True, caption_occlusion=True,
        shuffle_clauses=True,
    )  # fmt: skip
    dataset = make_synthetic_dataset(6, config, seed=2, cache_dir=tmp_path)
    for row in dataset:
        clip = generate_clip(config, 2, row["index"])
        for stored, drawn in zip(row["objects"], clip["objects"], strict=True):
            assert stored["speed"] == drawn.get("speed")
            assert stored["in_front_of"] == drawn["in_front_of"] and stored["caption_rank"] == drawn["caption_rank"]
        assert caption_from_objects(row["objects"], None, row["caption_template"]) == row["caption"]


@pytest.mark.parametrize(
    "facts, shuffle, expected",
    [
        ((), False, (False, False, False)),
        (("speed",), False, (True, False, False)),
        (["occlusion", "speed"], True, (True, True, True)),
    ],
)
def test_caption_fact_options_turn_on_the_config_fields(facts, shuffle, expected):
    from trajtok_hf.data import caption_fact_options

    options = caption_fact_options(facts, shuffle)
    assert tuple(options.values()) == expected and list(options) == [
        "caption_speed",
        "caption_occlusion",
        "shuffle_clauses",
    ]
    config = SyntheticVideoConfig(**SMALL, **options)
    assert (config.caption_speed, config.caption_occlusion, config.shuffle_clauses) == expected


@pytest.mark.parametrize("facts", ["speed", ("speed", "colour")])
def test_caption_fact_options_rejects_unknown_facts(facts):
    from trajtok_hf.data import caption_fact_options

    with pytest.raises(ValueError, match="`caption_facts` must be a sequence"):
        caption_fact_options(facts)
