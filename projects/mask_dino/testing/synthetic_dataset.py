"""Generate a small synthetic segmentation dataset in the real formats.

Every image is a scene of two textured "stuff" regions (``sky`` above a wavy
horizon, ``ground`` below) with overlapping filled "thing" shapes on top
(``disc``, ``square``, ``triangle``), each class with its own colour and
texture so that a tiny model can learn them. The same pixels are written in
three standard layouts at once, so the real dataset configs work with only
``data_root`` overridden::

    ROOT/coco/{train2017,val2017}/<id:012d>.jpg
    ROOT/coco/annotations/instances_{train,val}2017.json   things only
    ROOT/coco/annotations/panoptic_{train,val}2017.json    things + stuff
    ROOT/coco/annotations/panoptic_{train,val}2017/<id:012d>.png
    ROOT/ade/ADEChallengeData2016/images/{training,validation}/<name>.jpg
    ROOT/ade/ADEChallengeData2016/annotations/{training,validation}/<name>.png
    ROOT/cityscapes/leftImg8bit/{train,val}/synth/<name>_leftImg8bit.png
    ROOT/cityscapes/gtFine/{train,val}/synth/<name>_gtFine_labelTrainIds.png
    ROOT/synthetic_dataset.json                            what was generated

Conventions of the default ``synthetic`` format (what the tiny configs, the
demo and the learning benchmark read):

- category ids are COCO-style, ``1..5`` in the order of ``ALL_CLASSES``;
- instance json: non-crowd things are polygons when fully visible (the
  polygon rasterises exactly to the mask) and compressed RLE when occluded
  or at random; some things are crowd (``iscrowd=1``, uncompressed RLE);
- panoptic PNG ids are ``R + 256 G + 256^2 B``, segment id
  ``1000 * category_id + k``, one segment per stuff class, 0 = void;
- ADE maps are uint8 with 0 = ignore and ``k`` = ``ALL_CLASSES[k - 1]``;
  Cityscapes maps hold train ids ``0..4`` and 255 = ignore;
- every file of an image is named ``<id:012d>``;
- a small void patch (a few stuff pixels) per image is unlabelled in all
  formats, so every ignore path is exercised. Every other pixel belongs to
  exactly one stuff region or one thing instance.

The ``real`` format (``--format real``) writes the same scenes exactly as
the public datasets are written, so that the real task configs
(``configs/maskdino_r50_*.py``, 80 / 133 / 150 / 19 classes) read them with
only their paths moved. Each synthetic class stands for one real class
(``REAL_CLASSES``):

- instance json: the 80 COCO thing categories (ids in ``1..90`` with gaps,
  COCO names), annotation ids from 1, crowd regions as uncompressed RLE,
  things only;
- panoptic json: the 133 COCO panoptic categories (stuff ids ``92..200``)
  with ``isthing`` and ``color``; segment ids are colours chosen as
  panopticapi's ``IdGenerator`` does (the category colour, jittered for a
  second instance of a class), decoded with ``panopticapi.utils.rgb2id``;
- ADE20K: ``ADE_{train,val}_<k:08d>`` files, labels ``1..150`` in the
  order of ``ADE20KSegDataset`` and 0 = other (ignored by
  ``reduce_zero_label=True``);
- Cityscapes: ``synth_000000_<k:06d>`` files, ``*_gtFine_labelTrainIds.png``
  with train ids ``0..18`` and 255 = ignore, and ``*_gtFine_labelIds.png``
  with the Cityscapes label ids (0 = unlabeled), as cityscapesscripts
  writes them.

The output is deterministic for a seed: image ``i`` of a split depends only
on ``(seed, split, i, size)``, and both formats hold the same pixels. The
dataset is checked after writing (see :func:`validate_dataset`) and written
to a temporary folder that replaces ``ROOT`` at the end, so readers never
see a half-written dataset.

:func:`make_dataset` writes a dataset, :func:`validate_dataset` checks one
and :func:`summary` describes it; ``tools/misc/make_synthetic_dataset.py``
is the command line. Example::

    python tools/misc/make_synthetic_dataset.py --out data/synthetic \\
        --num-train 200 --num-val 50 --size 128 128 --seed 0
    python tools/misc/make_synthetic_dataset.py --out data/synthetic_real \\
        --format real
"""
import json
import os
import os.path as osp
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_utils

Size = Tuple[int, int]  # (height, width)

THING_CLASSES = ('disc', 'square', 'triangle')
STUFF_CLASSES = ('sky', 'ground')
ALL_CLASSES = THING_CLASSES + STUFF_CLASSES
NUM_THINGS = len(THING_CLASSES)

# Mean RGB colour of each class; instances jitter around it.
CLASS_COLORS = {
    'disc': (205, 45, 40),
    'square': (40, 165, 60),
    'triangle': (235, 195, 35),
    'sky': (150, 190, 240),
    'ground': (125, 90, 55),
}
MARKER = 'synthetic_dataset.json'
SEGMENT_ID_STRIDE = 1000  # panoptic segment id = 1000 * category_id + k
MIN_SIZE = 32
SPLITS = {
    # split: (COCO folder, ADE folder, Cityscapes folder, rng stream)
    'train': ('train2017', 'training', 'train', 0),
    'val': ('val2017', 'validation', 'val', 1),
}

FORMATS = ('synthetic', 'real')
CITYSCAPES_CITY = 'synth'

# The real class each synthetic class stands for in the ``real`` format:
# COCO category name, ADE20K label (1..150, ``ADE20KSegDataset`` order) and
# Cityscapes train id. Chosen to reach the edges of the real label spaces:
# COCO ids past the gaps, ADE labels 1 and 150, Cityscapes train ids 0, 18.
REAL_CLASSES = {
    # ADE20K 'ball', Cityscapes 'traffic light'
    'disc': dict(coco='sports ball', ade20k=120, cityscapes=6),
    'square': dict(coco='tv', ade20k=1, cityscapes=7),  # wall, traffic sign
    'triangle': dict(coco='kite', ade20k=150, cityscapes=18),  # flag, bicycle
    'sky': dict(coco='sky-other-merged', ade20k=3, cityscapes=10),  # sky
    'ground': dict(coco='dirt-merged', ade20k=14, cityscapes=0),  # earth, road
}
# Cityscapes label id (``*_gtFine_labelIds.png``) of the train ids above,
# from cityscapesscripts' helpers/labels.py; 0 = unlabeled.
CITYSCAPES_LABEL_IDS = {0: 7, 6: 19, 7: 20, 10: 23, 18: 33}

# The 133 COCO panoptic categories (panopticapi's
# panoptic_coco_categories.json): (id, name, colour). The first 80 are the
# things, the categories of the COCO instance json (same ids and names).
COCO_NUM_THINGS = 80
# yapf: disable
COCO_CATEGORIES = (
    (1, 'person', (220, 20, 60)),
    (2, 'bicycle', (119, 11, 32)),
    (3, 'car', (0, 0, 142)),
    (4, 'motorcycle', (0, 0, 230)),
    (5, 'airplane', (106, 0, 228)),
    (6, 'bus', (0, 60, 100)),
    (7, 'train', (0, 80, 100)),
    (8, 'truck', (0, 0, 70)),
    (9, 'boat', (0, 0, 192)),
    (10, 'traffic light', (250, 170, 30)),
    (11, 'fire hydrant', (100, 170, 30)),
    (13, 'stop sign', (220, 220, 0)),
    (14, 'parking meter', (175, 116, 175)),
    (15, 'bench', (250, 0, 30)),
    (16, 'bird', (165, 42, 42)),
    (17, 'cat', (255, 77, 255)),
    (18, 'dog', (0, 226, 252)),
    (19, 'horse', (182, 182, 255)),
    (20, 'sheep', (0, 82, 0)),
    (21, 'cow', (120, 166, 157)),
    (22, 'elephant', (110, 76, 0)),
    (23, 'bear', (174, 57, 255)),
    (24, 'zebra', (199, 100, 0)),
    (25, 'giraffe', (72, 0, 118)),
    (27, 'backpack', (255, 179, 240)),
    (28, 'umbrella', (0, 125, 92)),
    (31, 'handbag', (209, 0, 151)),
    (32, 'tie', (188, 208, 182)),
    (33, 'suitcase', (0, 220, 176)),
    (34, 'frisbee', (255, 99, 164)),
    (35, 'skis', (92, 0, 73)),
    (36, 'snowboard', (133, 129, 255)),
    (37, 'sports ball', (78, 180, 255)),
    (38, 'kite', (0, 228, 0)),
    (39, 'baseball bat', (174, 255, 243)),
    (40, 'baseball glove', (45, 89, 255)),
    (41, 'skateboard', (134, 134, 103)),
    (42, 'surfboard', (145, 148, 174)),
    (43, 'tennis racket', (255, 208, 186)),
    (44, 'bottle', (197, 226, 255)),
    (46, 'wine glass', (171, 134, 1)),
    (47, 'cup', (109, 63, 54)),
    (48, 'fork', (207, 138, 255)),
    (49, 'knife', (151, 0, 95)),
    (50, 'spoon', (9, 80, 61)),
    (51, 'bowl', (84, 105, 51)),
    (52, 'banana', (74, 65, 105)),
    (53, 'apple', (166, 196, 102)),
    (54, 'sandwich', (208, 195, 210)),
    (55, 'orange', (255, 109, 65)),
    (56, 'broccoli', (0, 143, 149)),
    (57, 'carrot', (179, 0, 194)),
    (58, 'hot dog', (209, 99, 106)),
    (59, 'pizza', (5, 121, 0)),
    (60, 'donut', (227, 255, 205)),
    (61, 'cake', (147, 186, 208)),
    (62, 'chair', (153, 69, 1)),
    (63, 'couch', (3, 95, 161)),
    (64, 'potted plant', (163, 255, 0)),
    (65, 'bed', (119, 0, 170)),
    (67, 'dining table', (0, 182, 199)),
    (70, 'toilet', (0, 165, 120)),
    (72, 'tv', (183, 130, 88)),
    (73, 'laptop', (95, 32, 0)),
    (74, 'mouse', (130, 114, 135)),
    (75, 'remote', (110, 129, 133)),
    (76, 'keyboard', (166, 74, 118)),
    (77, 'cell phone', (219, 142, 185)),
    (78, 'microwave', (79, 210, 114)),
    (79, 'oven', (178, 90, 62)),
    (80, 'toaster', (65, 70, 15)),
    (81, 'sink', (127, 167, 115)),
    (82, 'refrigerator', (59, 105, 106)),
    (84, 'book', (142, 108, 45)),
    (85, 'clock', (196, 172, 0)),
    (86, 'vase', (95, 54, 80)),
    (87, 'scissors', (128, 76, 255)),
    (88, 'teddy bear', (201, 57, 1)),
    (89, 'hair drier', (246, 0, 122)),
    (90, 'toothbrush', (191, 162, 208)),
    (92, 'banner', (255, 255, 128)),
    (93, 'blanket', (147, 211, 203)),
    (95, 'bridge', (150, 100, 100)),
    (100, 'cardboard', (168, 171, 172)),
    (107, 'counter', (146, 112, 198)),
    (109, 'curtain', (210, 170, 100)),
    (112, 'door-stuff', (92, 136, 89)),
    (118, 'floor-wood', (218, 88, 184)),
    (119, 'flower', (241, 129, 0)),
    (122, 'fruit', (217, 17, 255)),
    (125, 'gravel', (124, 74, 181)),
    (128, 'house', (70, 70, 70)),
    (130, 'light', (255, 228, 255)),
    (133, 'mirror-stuff', (154, 208, 0)),
    (138, 'net', (193, 0, 92)),
    (141, 'pillow', (76, 91, 113)),
    (144, 'platform', (255, 180, 195)),
    (145, 'playingfield', (106, 154, 176)),
    (147, 'railroad', (230, 150, 140)),
    (148, 'river', (60, 143, 255)),
    (149, 'road', (128, 64, 128)),
    (151, 'roof', (92, 82, 55)),
    (154, 'sand', (254, 212, 124)),
    (155, 'sea', (73, 77, 174)),
    (156, 'shelf', (255, 160, 98)),
    (159, 'snow', (255, 255, 255)),
    (161, 'stairs', (104, 84, 109)),
    (166, 'tent', (169, 164, 131)),
    (168, 'towel', (225, 199, 255)),
    (171, 'wall-brick', (137, 54, 74)),
    (175, 'wall-stone', (135, 158, 223)),
    (176, 'wall-tile', (7, 246, 231)),
    (177, 'wall-wood', (107, 255, 200)),
    (178, 'water-other', (58, 41, 149)),
    (180, 'window-blind', (183, 121, 142)),
    (181, 'window-other', (255, 73, 97)),
    (184, 'tree-merged', (107, 142, 35)),
    (185, 'fence-merged', (190, 153, 153)),
    (186, 'ceiling-merged', (146, 139, 141)),
    (187, 'sky-other-merged', (70, 130, 180)),
    (188, 'cabinet-merged', (134, 199, 156)),
    (189, 'table-merged', (209, 226, 140)),
    (190, 'floor-other-merged', (96, 36, 108)),
    (191, 'pavement-merged', (96, 96, 96)),
    (192, 'mountain-merged', (64, 170, 64)),
    (193, 'grass-merged', (152, 251, 152)),
    (194, 'dirt-merged', (208, 229, 228)),
    (195, 'paper-merged', (206, 186, 171)),
    (196, 'food-other-merged', (152, 161, 64)),
    (197, 'building-other-merged', (116, 112, 0)),
    (198, 'rock-merged', (0, 114, 143)),
    (199, 'wall-other-merged', (102, 102, 156)),
    (200, 'rug-merged', (250, 141, 255)),
)
# yapf: enable
_COCO_BY_NAME = {
    name: (cat_id, color)
    for cat_id, name, color in COCO_CATEGORIES
}


def category_id(name: str, fmt: str = 'synthetic') -> int:
    """COCO category id of a class name: 1-based in ``ALL_CLASSES`` order,
    or the id of the COCO class it stands for in the ``real`` format."""
    if fmt == 'real':
        return _COCO_BY_NAME[REAL_CLASSES[name]['coco']][0]
    return ALL_CLASSES.index(name) + 1


# ---------------------------------------------------------------- geometry
def _shape_polygon(rng: np.random.Generator, cls: str, cx: float, cy: float,
                   radius: float) -> List[float]:
    """Vertices (x0, y0, x1, y1, ...) of one thing shape, rounded so that the
    json holds exactly the polygon that is rasterised."""
    angle = rng.uniform(0, 2 * np.pi)
    num_vertices = {'disc': 24, 'square': 4, 'triangle': 3}[cls]
    t = angle + np.arange(num_vertices) * 2 * np.pi / num_vertices
    xy = np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], 1)
    return [round(float(v), 2) for v in xy.reshape(-1)]


def _rasterize(polygon: List[float], height: int, width: int) -> np.ndarray:
    """Rasterise a polygon exactly as pycocotools (and mmdet) decode it."""
    rles = mask_utils.frPyObjects([polygon], height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def _stuff_layout(rng: np.random.Generator, height: int,
                  width: int) -> np.ndarray:
    """Boolean (H, W) map, True for sky (above a wavy horizon)."""
    base = rng.uniform(0.3, 0.65) * height
    amp = rng.uniform(0.02, 0.08) * height
    period = rng.uniform(0.5, 1.5) * width
    phase = rng.uniform(0, 2 * np.pi)
    xs = np.arange(width)
    horizon = base + amp * np.sin(2 * np.pi * xs / period + phase)
    return np.arange(height)[:, None] < horizon[None, :]


def _place_things(rng: np.random.Generator, height: int,
                  width: int) -> List[dict]:
    """Sample overlapping shapes, bottom to top, each left with at least half
    of its area (and a minimum area) visible."""
    side = min(height, width)
    min_visible = max(20, int(0.004 * height * width))
    things: List[dict] = []
    owner = np.full((height, width), -1, np.int32)
    target = int(rng.integers(1, 5))
    for _ in range(30):
        if len(things) == target:
            break
        cls = THING_CLASSES[int(rng.integers(NUM_THINGS))]
        radius = rng.uniform(0.09, 0.22) * side
        cx = rng.uniform(radius + 1, width - radius - 1)
        cy = rng.uniform(radius + 1, height - radius - 1)
        polygon = _shape_polygon(rng, cls, cx, cy, radius)
        full = _rasterize(polygon, height, width)
        new_owner = owner.copy()
        new_owner[full] = len(things)
        areas = np.bincount(
            new_owner[new_owner >= 0], minlength=len(things) + 1)
        ok = all(areas[i] >= max(min_visible, 0.5 * t['full_area'])
                 for i, t in enumerate(things))
        if not ok or full.sum() < min_visible:
            continue
        owner = new_owner
        things.append(
            dict(
                cls=cls,
                polygon=polygon,
                center=(cx, cy),
                radius=radius,
                full_area=int(full.sum())))
    for i, thing in enumerate(things):
        thing['mask'] = owner == i
        thing['occluded'] = bool(thing['mask'].sum() < thing['full_area'])
    return things


def _void_patch(rng: np.random.Generator,
                thing_pixels: np.ndarray) -> np.ndarray:
    """A small rectangle of stuff pixels left unlabelled (ignore)."""
    height, width = thing_pixels.shape
    void = np.zeros_like(thing_pixels)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(2, 5, size=2))
        y = int(rng.integers(0, height - h + 1))
        x = int(rng.integers(0, width - w + 1))
        if not thing_pixels[y:y + h, x:x + w].any():
            void[y:y + h, x:x + w] = True
            break
    return void


# --------------------------------------------------------------- rendering
def _class_texture(rng: np.random.Generator, cls: str, height: int, width: int,
                   center: Tuple[float, float]) -> np.ndarray:
    """Float (H, W, 3) texture of one segment over the whole canvas."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    color = np.array(CLASS_COLORS[cls], np.float32)
    color = color + rng.uniform(-20, 20, size=3).astype(np.float32)
    cx, cy = center
    if cls == 'disc':  # concentric rings
        pattern = np.cos(np.hypot(xs - cx, ys - cy) * 1.2)
    elif cls == 'square':  # checkerboard
        cell = 4.0
        pattern = ((np.floor((xs - cx) / cell) + np.floor(
            (ys - cy) / cell)) % 2) * 2 - 1
    elif cls == 'triangle':  # diagonal stripes
        pattern = np.sign(np.sin((xs + ys) * 0.9))
    elif cls == 'sky':  # vertical gradient, brighter near the horizon
        pattern = ys / height * 2 - 1
    else:  # ground: horizontal furrows
        pattern = np.sin(ys * 1.3 + 0.3 * np.sin(xs * 0.2))
    amplitude = {
        'disc': 25,
        'square': 22,
        'triangle': 25,
        'sky': 25,
        'ground': 18
    }[cls]
    return color + amplitude * pattern[..., None]


def _render(rng: np.random.Generator, height: int, width: int, sky: np.ndarray,
            things: List[dict]) -> np.ndarray:
    """RGB uint8 image: stuff textures, thing textures, darkened thing
    outlines (to separate touching instances of a class) and noise."""
    img = np.where(sky[..., None],
                   _class_texture(rng, 'sky', height, width, (0, 0)),
                   _class_texture(rng, 'ground', height, width, (0, 0)))
    visual_id = np.where(sky, -1, -2).astype(np.int32)
    for i, thing in enumerate(things):
        tex = _class_texture(rng, thing['cls'], height, width, thing['center'])
        img[thing['mask']] = tex[thing['mask']]
        visual_id[thing['mask']] = i
    padded = np.pad(visual_id, 1, mode='edge')
    edge = np.zeros_like(sky)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dy:dy + height, dx:dx + width] != visual_id
    img[edge & (visual_id >= 0)] *= 0.5
    img += rng.normal(0, 5, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ------------------------------------------------------------- annotations
def _encode_rle(mask: np.ndarray, compressed: bool) -> dict:
    """COCO RLE of a boolean mask; uncompressed (counts list) as COCO stores
    crowd regions, or compressed (counts string)."""
    if compressed:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return dict(size=list(rle['size']), counts=rle['counts'].decode())
    flat = mask.astype(np.uint8).reshape(-1, order='F')
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:  # RLE counts start with a run of zeros
        counts = [0] + counts
    return dict(size=list(mask.shape), counts=counts)


def _mask_bbox(mask: np.ndarray) -> List[float]:
    """Tight COCO box [x, y, w, h] of a boolean mask (pixel extents)."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [
        float(x0),
        float(y0),
        float(xs.max() + 1 - x0),
        float(ys.max() + 1 - y0)
    ]


def _make_sample(seed: int, stream: int, index: int, size: Size) -> dict:
    """Everything about one image, drawn from its own random stream."""
    rng = np.random.default_rng([seed, stream, index, *size])
    height, width = size
    sky = _stuff_layout(rng, height, width)
    things = _place_things(rng, height, width)
    thing_pixels = np.zeros((height, width), bool)
    for thing in things:
        thing_pixels |= thing['mask']
    void = _void_patch(rng, thing_pixels)
    image = _render(rng, height, width, sky, things)
    for thing in things:
        thing['iscrowd'] = bool(rng.random() < 0.12)
        # Polygons only where they rasterise exactly to the visible mask.
        thing['as_polygon'] = (not thing['iscrowd'] and not thing['occluded']
                               and rng.random() < 0.75)
    stuff = {
        'sky': sky & ~thing_pixels & ~void,
        'ground': ~sky & ~thing_pixels & ~void,
    }
    return dict(image=image, things=things, stuff=stuff, void=void)


def _rgb_id(color: Sequence[int]) -> int:
    """Panoptic segment id of an RGB colour, as ``panopticapi.utils.rgb2id``.
    """
    return int(color[0]) + 256 * int(color[1]) + 256**2 * int(color[2])


def _real_segment_id(rng: np.random.Generator, cls: str, taken: set) -> int:
    """Segment id as panopticapi's ``IdGenerator`` picks it: the COCO colour
    of the category for stuff and for the first instance of a thing class,
    that colour jittered by up to 30 per channel for further instances.
    ``taken`` holds the ids in use in the image (stuff ids included)."""
    color = np.array(_COCO_BY_NAME[REAL_CLASSES[cls]['coco']][1])
    seg_id = _rgb_id(color)
    if cls in STUFF_CLASSES:
        return seg_id
    while seg_id in taken or seg_id == 0:
        jittered = np.clip(color + rng.integers(-30, 31, size=3), 0, 255)
        seg_id = _rgb_id(jittered)
    taken.add(seg_id)
    return seg_id


def _panoptic_and_semantic(
    sample: dict,
    height: int,
    width: int,
    fmt: str = 'synthetic',
    id_rng: Optional[np.random.Generator] = None
) -> Tuple[np.ndarray, np.ndarray, List[dict]]:
    """Panoptic id map (H, W) int64, class-index map (H, W) int64 (-1 =
    void) and the panoptic segments_info. ``id_rng`` draws the segment ids
    of the ``real`` format."""
    pan = np.zeros((height, width), np.int64)
    sem = np.full((height, width), -1, np.int64)
    segments = []
    counters: Dict[str, int] = {}
    taken = {_real_segment_id(id_rng, cls, set())
             for cls in STUFF_CLASSES} if fmt == 'real' else set()

    def add(cls: str, mask: np.ndarray, iscrowd: bool) -> None:
        if not mask.any():
            return
        counters[cls] = counters.get(cls, 0) + 1
        if fmt == 'real':
            seg_id = _real_segment_id(id_rng, cls, taken)
        else:
            seg_id = SEGMENT_ID_STRIDE * category_id(cls) + counters[cls]
        pan[mask] = seg_id
        sem[mask] = ALL_CLASSES.index(cls)
        segments.append(
            dict(
                id=seg_id,
                category_id=category_id(cls, fmt),
                area=int(mask.sum()),
                bbox=_mask_bbox(mask),
                iscrowd=int(iscrowd)))

    for thing in sample['things']:
        add(thing['cls'], thing['mask'], thing['iscrowd'])
    for cls in STUFF_CLASSES:
        add(cls, sample['stuff'][cls], False)
    return pan, sem, segments


def _id_to_rgb(pan: np.ndarray) -> np.ndarray:
    """Panoptic ids to an RGB uint8 image, id = R + 256 G + 256^2 B."""
    return np.stack([pan % 256, pan // 256 % 256, pan // 256**2 % 256],
                    -1).astype(np.uint8)


def _real_categories(things_only: bool) -> List[dict]:
    """The COCO instance (80) or panoptic (133) categories, as in the
    public jsons (without ``supercategory``)."""
    cats = []
    for index, (cat_id, name, color) in enumerate(COCO_CATEGORIES):
        if things_only and index >= COCO_NUM_THINGS:
            break
        cat = dict(id=cat_id, name=name)
        if not things_only:
            cat.update(isthing=int(index < COCO_NUM_THINGS), color=list(color))
        cats.append(cat)
    return cats


def _categories(things_only: bool, fmt: str = 'synthetic') -> List[dict]:
    """COCO categories; panoptic ones carry ``isthing`` and a colour."""
    if fmt == 'real':
        return _real_categories(things_only)
    names = THING_CLASSES if things_only else ALL_CLASSES
    cats = []
    for name in names:
        isthing = name in THING_CLASSES
        cat = dict(
            id=category_id(name),
            name=name,
            supercategory='shape' if isthing else 'background')
        if not things_only:
            cat.update(isthing=int(isthing), color=list(CLASS_COLORS[name]))
        cats.append(cat)
    return cats


# ------------------------------------------------------------------ writing
def _layout_paths(root: str) -> Dict[str, str]:
    """Every folder and annotation file of the three layouts."""
    coco = osp.join(root, 'coco')
    ade = osp.join(root, 'ade', 'ADEChallengeData2016')
    city = osp.join(root, 'cityscapes')
    coco_ann = osp.join(coco, 'annotations')
    paths = dict(root=root, coco_root=coco, ade_root=ade, cityscapes_root=city)
    for split, (coco_dir, ade_dir, city_dir, _) in SPLITS.items():
        paths[f'coco_{split}_img'] = osp.join(coco, coco_dir)
        paths[f'instances_{split}'] = osp.join(coco_ann,
                                               f'instances_{coco_dir}.json')
        paths[f'panoptic_{split}'] = osp.join(coco_ann,
                                              f'panoptic_{coco_dir}.json')
        paths[f'panoptic_{split}_seg'] = osp.join(coco_ann,
                                                  f'panoptic_{coco_dir}')
        paths[f'ade_{split}_img'] = osp.join(ade, 'images', ade_dir)
        paths[f'ade_{split}_ann'] = osp.join(ade, 'annotations', ade_dir)
        paths[f'cityscapes_{split}_img'] = osp.join(city, 'leftImg8bit',
                                                    city_dir, CITYSCAPES_CITY)
        paths[f'cityscapes_{split}_ann'] = osp.join(city, 'gtFine', city_dir,
                                                    CITYSCAPES_CITY)
    return paths


def _write_png(path: str, array: np.ndarray) -> None:
    """Write a PNG (RGB arrays are given in RGB order)."""
    if array.ndim == 3:
        array = array[..., ::-1]
    if not cv2.imwrite(path, array):
        raise OSError(f'could not write {path}')


def _file_stems(fmt: str, split: str, index: int,
                img_id: int) -> Dict[str, str]:
    """File name stems of image ``index`` of a split in the COCO, ADE20K and
    Cityscapes layouts (the real datasets' naming in the ``real`` format)."""
    coco = f'{img_id:012d}'
    if fmt != 'real':
        return dict(coco=coco, ade=coco, cityscapes=coco)
    return dict(
        coco=coco,
        ade=f'ADE_{split}_{index + 1:08d}',
        cityscapes=f'{CITYSCAPES_CITY}_000000_{index + 1:06d}')


def _label_tables(fmt: str) -> Dict[str, np.ndarray]:
    """uint8 look-up tables from ``class index + 1`` (0 = void) to the
    values of the ADE20K maps and the Cityscapes train-id (and, in the
    ``real`` format, label-id) maps."""
    num = len(ALL_CLASSES)
    if fmt != 'real':
        return dict(
            ade=np.arange(num + 1, dtype=np.uint8),
            train_ids=np.array([255, *range(num)], np.uint8))
    train_ids = [REAL_CLASSES[c]['cityscapes'] for c in ALL_CLASSES]
    return dict(
        ade=np.array([0] + [REAL_CLASSES[c]['ade20k'] for c in ALL_CLASSES],
                     np.uint8),
        train_ids=np.array([255, *train_ids], np.uint8),
        label_ids=np.array([0] + [CITYSCAPES_LABEL_IDS[t] for t in train_ids],
                           np.uint8))


def _label_paths(paths: Dict[str, str], split: str,
                 stems: Dict[str, str]) -> Dict[str, str]:
    """Paths of the ADE20K and Cityscapes label maps of one image."""
    city = osp.join(paths[f'cityscapes_{split}_ann'], stems['cityscapes'])
    return dict(
        ade=osp.join(paths[f'ade_{split}_ann'], stems['ade'] + '.png'),
        train_ids=city + '_gtFine_labelTrainIds.png',
        label_ids=city + '_gtFine_labelIds.png')


def _write_images(sample: dict, paths: Dict[str, str], split: str,
                  stems: Dict[str, str]) -> None:
    """The image as JPEG (COCO, ADE20K) and PNG (Cityscapes)."""
    ok, jpg = cv2.imencode('.jpg', sample['image'][..., ::-1],
                           [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError(f'JPEG encoding failed for image {stems["coco"]}')
    # The PNG copy holds the decoded JPEG pixels: one image everywhere.
    decoded = cv2.imdecode(jpg, cv2.IMREAD_COLOR)
    for key, stem in ((f'coco_{split}_img', stems['coco']),
                      (f'ade_{split}_img', stems['ade'])):
        with open(osp.join(paths[key], stem + '.jpg'), 'wb') as f:
            f.write(jpg.tobytes())
    cv2.imwrite(
        osp.join(paths[f'cityscapes_{split}_img'],
                 f'{stems["cityscapes"]}_leftImg8bit.png'), decoded)


def _instance_annotations(sample: dict, img_id: int, first_ann_id: int,
                          fmt: str) -> List[dict]:
    """COCO instance annotations of the things of one image."""
    anns = []
    for thing in sample['things']:
        mask = thing['mask']
        if thing['as_polygon']:
            segm = [thing['polygon']]
        else:
            segm = _encode_rle(mask, compressed=not thing['iscrowd'])
        anns.append(
            dict(
                id=first_ann_id + len(anns),
                image_id=img_id,
                category_id=category_id(thing['cls'], fmt),
                segmentation=segm,
                area=int(mask.sum()),
                bbox=_mask_bbox(mask),
                iscrowd=int(thing['iscrowd'])))
    return anns


def _write_split(split: str,
                 paths: Dict[str, str],
                 seed: int,
                 size: Size,
                 num_images: int,
                 first_id: int,
                 fmt: str = 'synthetic') -> None:
    """Generate one split and write it in all three layouts."""
    height, width = size
    stream = SPLITS[split][3]
    for key in ('coco_{}_img', 'panoptic_{}_seg', 'ade_{}_img', 'ade_{}_ann',
                'cityscapes_{}_img', 'cityscapes_{}_ann'):
        os.makedirs(paths[key.format(split)], exist_ok=True)
    tables = _label_tables(fmt)
    images, inst_anns, pan_anns = [], [], []
    for index in range(num_images):
        img_id = first_id + index
        stems = _file_stems(fmt, split, index, img_id)
        sample = _make_sample(seed, stream, index, size)
        _write_images(sample, paths, split, stems)
        images.append(
            dict(
                id=img_id,
                file_name=stems['coco'] + '.jpg',
                height=height,
                width=width))
        inst_anns += _instance_annotations(sample, img_id,
                                           len(inst_anns) + 1, fmt)

        # the real format's segment ids come from their own random stream,
        # so the scenes are the same in both formats
        id_rng = np.random.default_rng([seed, stream, index, *size, 1]) \
            if fmt == 'real' else None
        pan, sem, segments = _panoptic_and_semantic(sample, height, width, fmt,
                                                    id_rng)
        _write_png(
            osp.join(paths[f'panoptic_{split}_seg'], stems['coco'] + '.png'),
            _id_to_rgb(pan))
        pan_anns.append(
            dict(
                image_id=img_id,
                file_name=stems['coco'] + '.png',
                segments_info=segments))
        for key, path in _label_paths(paths, split, stems).items():
            if key in tables:
                _write_png(path, tables[key][sem + 1])

    info = dict(description='Mask DINO synthetic shapes', version='1.0')
    extra = dict(licenses=[]) if fmt == 'real' else {}
    with open(paths[f'instances_{split}'], 'w') as f:
        json.dump(
            dict(
                info=info,
                **extra,
                images=images,
                annotations=inst_anns,
                categories=_categories(True, fmt)), f)
    with open(paths[f'panoptic_{split}'], 'w') as f:
        json.dump(
            dict(
                info=info,
                **extra,
                images=images,
                annotations=pan_anns,
                categories=_categories(False, fmt)), f)


# --------------------------------------------------------------- validation
class DatasetError(ValueError):
    """A generated file disagrees with the rest of the dataset."""


def _check(cond: bool, path: str, msg: str) -> None:
    if not cond:
        raise DatasetError(f'{path}: {msg}')


def _load_json(path: str) -> dict:
    if not osp.isfile(path):
        raise DatasetError(f'{path}: missing')
    with open(path) as f:
        return json.load(f)


def _read_png(path: str, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    img = cv2.imread(path, flags)
    if img is None:
        raise DatasetError(f'{path}: missing or unreadable')
    return img


def _ann_mask(segm, height: int, width: int) -> np.ndarray:
    """Decode a COCO segmentation (polygons or RLE) to a bool mask."""
    if isinstance(segm, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    elif isinstance(segm['counts'], list):
        rle = mask_utils.frPyObjects(segm, height, width)
    else:
        rle = segm
    return mask_utils.decode(rle).astype(bool)


def _check_categories(inst: dict, pan: dict, inst_path: str, pan_path: str,
                      fmt: str) -> None:
    """Instance json: things only (no stuff, no id 0); panoptic json: every
    category with ``isthing``; both exactly the format's categories."""
    _check(inst['categories'] == _categories(True, fmt), inst_path,
           f'categories are not the {fmt} format\'s thing categories')
    _check(pan['categories'] == _categories(False, fmt), pan_path,
           f'categories are not the {fmt} format\'s panoptic categories')
    _check(
        all(c['id'] > 0 and 'isthing' not in c for c in inst['categories']),
        inst_path, 'category id 0 or stuff categories in the instance json')
    ann_ids = [a['id'] for a in inst['annotations']]
    _check(
        len(set(ann_ids)) == len(ann_ids) and min(ann_ids, default=1) >= 1,
        inst_path, 'annotation ids must be unique and >= 1 (COCOeval '
        'counts a match with ground-truth id 0 as a false positive)')


def _check_panoptic_png(png_path: str, pan_ann: dict, h: int, w: int,
                        id_to_class: Dict[int, int]) -> np.ndarray:
    """Decode a panoptic PNG, check it against its ``segments_info``;
    returns the id map."""
    rgb = _read_png(png_path, cv2.IMREAD_COLOR)[..., ::-1].astype(np.int64)
    _check(rgb.shape[:2] == (h, w), png_path, 'wrong size')
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]
    segs = {s['id']: s for s in pan_ann['segments_info']}
    _check(
        len(segs) == len(pan_ann['segments_info']), png_path,
        'segment ids are not unique')
    _check(
        set(np.unique(ids)) - {0} == set(segs), png_path,
        'PNG ids differ from the json segments_info')
    for seg_id, seg in segs.items():
        mask = ids == seg_id
        _check(seg['category_id'] in id_to_class, png_path,
               f'segment {seg_id}: unexpected category {seg["category_id"]}')
        _check(
            int(mask.sum()) == seg['area'], png_path,
            f'segment {seg_id}: area {seg["area"]} != {mask.sum()}')
        _check(
            _mask_bbox(mask) == seg['bbox'], png_path,
            f'segment {seg_id}: bbox is not the mask extent')
    return ids


def _check_label_maps(paths: Dict[str, str], split: str, stems: Dict[str, str],
                      expected_sem: np.ndarray, fmt: str) -> None:
    """ADE20K and Cityscapes maps equal the panoptic classes, through the
    format's label tables (void included)."""
    tables = _label_tables(fmt)
    for key, path in _label_paths(paths, split, stems).items():
        if key not in tables:
            continue
        values = _read_png(path).astype(np.int64)
        _check(
            np.array_equal(values, tables[key][expected_sem + 1]), path,
            'differs from the panoptic map')
        void = tables[key][0]
        _check((values == void).any(), path, f'no ignore ({void}) pixels')


def _check_images(paths: Dict[str, str], split: str, stems: Dict[str,
                                                                 str]) -> None:
    """The three copies of an image hold the same pixels."""
    jpg_path = osp.join(paths[f'coco_{split}_img'], stems['coco'] + '.jpg')
    jpg = _read_png(jpg_path, cv2.IMREAD_COLOR)
    for other in (osp.join(paths[f'ade_{split}_img'], stems['ade'] + '.jpg'),
                  osp.join(paths[f'cityscapes_{split}_img'],
                           f'{stems["cityscapes"]}_leftImg8bit.png')):
        _check(
            np.array_equal(_read_png(other, cv2.IMREAD_COLOR), jpg), other,
            f'pixels differ from {jpg_path}')


def _check_instances(inst_path: str, name: str, anns: List[dict],
                     thing_segs: List[dict], ids: np.ndarray,
                     counts: Dict[str, int]) -> None:
    """Every instance annotation decodes (polygon or RLE) to exactly one
    panoptic thing segment with the same class and crowd flag."""
    h, w = ids.shape
    _check(
        len(anns) == len(thing_segs), inst_path,
        f'image {name}: {len(anns)} instances, '
        f'{len(thing_segs)} panoptic things')
    for ann in anns:
        mask = _ann_mask(ann['segmentation'], h, w)
        _check(
            int(mask.sum()) == ann['area'], inst_path,
            f'annotation {ann["id"]}: area is not the mask area')
        _check(
            _mask_bbox(mask) == ann['bbox'], inst_path,
            f'annotation {ann["id"]}: bbox is not the mask extent')
        if ann['iscrowd']:  # COCO stores crowd regions as counts lists
            _check(
                isinstance(ann['segmentation'], dict)
                and isinstance(ann['segmentation']['counts'], list), inst_path,
                f'crowd annotation {ann["id"]}: not an '
                'uncompressed RLE')
        match = [s for s in thing_segs if np.array_equal(ids == s['id'], mask)]
        _check(
            len(match) == 1 and match[0]['category_id'] == ann['category_id']
            and match[0]['iscrowd'] == ann['iscrowd'], inst_path,
            f'annotation {ann["id"]} has no identical panoptic segment')
        counts['crowd'] += ann['iscrowd']
        is_poly = isinstance(ann['segmentation'], list)
        counts['polygons'] += int(is_poly)
        counts['rle'] += int(not is_poly)


def _validate_split(split: str, paths: Dict[str, str],
                    fmt: str) -> Dict[str, int]:
    """Check one split's files against each other; returns counts."""
    inst_path, pan_path = paths[f'instances_{split}'], paths[
        f'panoptic_{split}']
    inst, pan = _load_json(inst_path), _load_json(pan_path)
    _check_categories(inst, pan, inst_path, pan_path, fmt)
    _check(
        len(inst['images']) == len(pan['annotations']), pan_path,
        'one panoptic annotation per image expected')
    id_to_class = {category_id(c, fmt): i for i, c in enumerate(ALL_CLASSES)}
    thing_ids = {category_id(c, fmt) for c in THING_CLASSES}
    anns_by_img: Dict[int, List[dict]] = {}
    for ann in inst['annotations']:
        _check(
            ann['category_id'] in thing_ids, inst_path,
            f'annotation {ann["id"]}: category {ann["category_id"]} is '
            'not a thing of this dataset')
        anns_by_img.setdefault(ann['image_id'], []).append(ann)
    counts = dict(images=0, instances=0, crowd=0, polygons=0, rle=0)
    for index, (img_info,
                pan_ann) in enumerate(zip(inst['images'], pan['annotations'])):
        stems = _file_stems(fmt, split, index, img_info['id'])
        _check(img_info['file_name'] == stems['coco'] + '.jpg', inst_path,
               f'image {index}: file name {img_info["file_name"]}')
        _check(pan_ann['image_id'] == img_info['id'], pan_path,
               f'image order differs at {stems["coco"]}')
        ids = _check_panoptic_png(
            osp.join(paths[f'panoptic_{split}_seg'], pan_ann['file_name']),
            pan_ann, img_info['height'], img_info['width'], id_to_class)
        expected_sem = np.full(ids.shape, -1, np.int64)
        for seg in pan_ann['segments_info']:
            expected_sem[ids == seg['id']] = id_to_class[seg['category_id']]
        _check_label_maps(paths, split, stems, expected_sem, fmt)
        _check_images(paths, split, stems)
        thing_segs = sorted((s for s in pan_ann['segments_info']
                             if s['category_id'] in thing_ids),
                            key=lambda s: s['id'])
        anns = anns_by_img.get(img_info['id'], [])
        _check_instances(inst_path, stems['coco'], anns, thing_segs, ids,
                         counts)
        counts['images'] += 1
        counts['instances'] += len(anns)
    return counts


def _marker_format(root: str) -> str:
    """The format recorded in the marker of a generated dataset (datasets
    of the default format, and older ones, record none)."""
    marker = osp.join(root, MARKER)
    if not osp.isfile(marker):
        return 'synthetic'
    with open(marker) as f:
        return json.load(f).get('format', 'synthetic')


def validate_dataset(root: str,
                     fmt: Optional[str] = None) -> Dict[str, Dict[str, int]]:
    """Check that a generated dataset is self-consistent.

    Checks, for every image: the categories are exactly the format's (the
    instance json with things only), annotation ids are unique and >= 1,
    panoptic PNG ids equal the json segment ids, segment areas and boxes
    equal those of the PNG masks, ADE and Cityscapes maps equal the
    panoptic classes through the format's label values (with the same void
    pixels, and some void present), the three image copies have identical
    pixels, crowd regions are uncompressed RLEs, and every instance
    annotation decodes (polygon or RLE) to exactly one panoptic thing
    segment with the same class, crowd flag, area and box.

    Args:
        root (str): The dataset root given to :func:`make_dataset`.
        fmt (str, optional): ``'synthetic'`` or ``'real'``. Defaults to
            the format recorded in the dataset's marker file.

    Returns:
        dict: Per split, counts of images, instances, crowd instances,
        polygon and RLE annotations.

    Raises:
        DatasetError: naming the offending file and what is wrong.
    """
    fmt = _marker_format(root) if fmt is None else fmt
    paths = _layout_paths(root)
    return {split: _validate_split(split, paths, fmt) for split in SPLITS}


# -------------------------------------------------------------------- entry
def _check_args(out: str,
                num_train: int,
                num_val: int,
                size: Sequence[int],
                seed: int,
                fmt: str = 'synthetic') -> Tuple[int, int]:
    """Validate the arguments; returns ``size`` as (H, W)."""
    if fmt not in FORMATS:
        raise ValueError(f'fmt must be one of {FORMATS}, got {fmt!r}')
    if not isinstance(out, str) or not out:
        raise ValueError(f'out must be a non-empty path, got {out!r}')
    for name, value in (('num_train', num_train), ('num_val', num_val)):
        if isinstance(value, bool) or not isinstance(value, int) \
                or value < 1:
            raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
    if len(size) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) or v < MIN_SIZE
            for v in size):
        raise ValueError(
            f'size must be two integers (H, W) >= {MIN_SIZE}, got {size!r}')
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f'seed must be an integer >= 0, got {seed!r}')
    if osp.exists(out) and not osp.isdir(out):
        raise ValueError(f'out {out!r} exists and is not a folder')
    if osp.isdir(out) and os.listdir(out) and not osp.isfile(
            osp.join(out, MARKER)):
        raise ValueError(
            f'out {out!r} is a non-empty folder that this tool did not '
            f'write (no {MARKER}); refusing to replace it')
    return int(size[0]), int(size[1])


def make_dataset(out: str,
                 num_train: int = 200,
                 num_val: int = 50,
                 size: Sequence[int] = (128, 128),
                 seed: int = 0,
                 validate: bool = True,
                 fmt: str = 'synthetic') -> Dict[str, str]:
    """Generate the synthetic dataset under ``out``.

    Args:
        out (str): Dataset root. It must be absent, empty or a dataset
            written by this tool (which is then replaced).
        num_train (int): Number of training images. Defaults to 200.
        num_val (int): Number of validation images. Defaults to 50.
        size (Sequence[int]): Image (height, width). Defaults to (128, 128).
        seed (int): Random seed. Defaults to 0.
        validate (bool): Check the written files with
            :func:`validate_dataset`. Defaults to True.
        fmt (str): ``'synthetic'`` (the synthetic class names, category
            ids 1..5) or ``'real'`` (the public datasets' categories, label
            values and file names; see the module docstring). Both hold
            the same scenes. Defaults to ``'synthetic'``.

    Returns:
        dict[str, str]: Paths of the roots, image folders and annotation
        files, e.g. ``coco_root``, ``instances_val``, ``panoptic_val``,
        ``panoptic_val_seg``, ``ade_root``, ``cityscapes_root``.
    """
    height, width = _check_args(out, num_train, num_val, size, seed, fmt)
    out = osp.abspath(out)
    parent = osp.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = osp.join(parent, f'.{osp.basename(out)}.tmp-{os.getpid()}')
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp_paths = _layout_paths(tmp)
        _write_split('train', tmp_paths, seed, (height, width), num_train, 1,
                     fmt)
        _write_split('val', tmp_paths, seed, (height, width), num_val,
                     num_train + 1, fmt)
        stats = validate_dataset(tmp, fmt) if validate else None
        marker = dict(
            num_train=num_train,
            num_val=num_val,
            size=[height, width],
            seed=seed,
            thing_classes=list(THING_CLASSES),
            stuff_classes=list(STUFF_CLASSES),
            stats=stats)
        if fmt != 'synthetic':  # the default marker stays as it was
            marker.update(format=fmt, real_classes=REAL_CLASSES)
        with open(osp.join(tmp, MARKER), 'w') as f:
            json.dump(marker, f, indent=1)
        old = None
        if osp.isdir(out):
            old = osp.join(parent, f'.{osp.basename(out)}.old-{os.getpid()}')
            os.rename(out, old)
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _layout_paths(out)


def summary(root: str, seconds: float, fmt: str = 'synthetic') -> str:
    """Report of a dataset written by :func:`make_dataset`.

    Args:
        root (str): Dataset root (``make_dataset(...)['root']``).
        seconds (float): Time it took to write it.
        fmt (str): Its format, named in the report unless it is
            ``'synthetic'``. Defaults to ``'synthetic'``.

    Returns:
        str: One line for the root, one per split with the counts of the
        validation statistics stored in the marker file.
    """
    with open(osp.join(root, MARKER)) as f:
        stats = json.load(f)['stats']
    fmt_note = '' if fmt == 'synthetic' else f' ({fmt} format)'
    lines = [f'wrote {root}{fmt_note} in {seconds:.1f}s (validated):']
    for split, c in stats.items():
        lines.append(f'  {split}: {c["images"]} images, {c["instances"]} '
                     f'thing instances ({c["crowd"]} crowd, '
                     f'{c["polygons"]} polygons, {c["rle"]} RLE)')
    return '\n'.join(lines)
