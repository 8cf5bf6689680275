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

Conventions:

- category ids are COCO-style, ``1..5`` in the order of ``ALL_CLASSES``;
- instance json: non-crowd things are polygons when fully visible (the
  polygon rasterises exactly to the mask) and compressed RLE when occluded
  or at random; some things are crowd (``iscrowd=1``, uncompressed RLE);
- panoptic PNG ids are ``R + 256 G + 256^2 B``, segment id
  ``1000 * category_id + k``, one segment per stuff class, 0 = void;
- ADE maps are uint8 with 0 = ignore and ``k`` = ``ALL_CLASSES[k - 1]``;
  Cityscapes maps hold train ids ``0..4`` and 255 = ignore;
- a small void patch (a few stuff pixels) per image is unlabelled in all
  formats, so every ignore path is exercised. Every other pixel belongs to
  exactly one stuff region or one thing instance.

The output is deterministic for a seed: image ``i`` of a split depends only
on ``(seed, split, i, size)``. The dataset is checked after writing (see
:func:`validate_dataset`) and written to a temporary folder that replaces
``ROOT`` at the end, so readers never see a half-written dataset.

Example::

    python tools/misc/make_synthetic_dataset.py --out data/synthetic \\
        --num-train 200 --num-val 50 --size 128 128 --seed 0
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
import time
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


def category_id(name: str) -> int:
    """COCO-style category id (1-based) of a class name."""
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


def _panoptic_and_semantic(
        sample: dict, height: int,
        width: int) -> Tuple[np.ndarray, np.ndarray, List[dict]]:
    """Panoptic id map (H, W) int64, class-index map (H, W) int64 (-1 =
    void) and the panoptic segments_info."""
    pan = np.zeros((height, width), np.int64)
    sem = np.full((height, width), -1, np.int64)
    segments = []
    counters: Dict[str, int] = {}

    def add(cls: str, mask: np.ndarray, iscrowd: bool) -> None:
        if not mask.any():
            return
        counters[cls] = counters.get(cls, 0) + 1
        seg_id = SEGMENT_ID_STRIDE * category_id(cls) + counters[cls]
        pan[mask] = seg_id
        sem[mask] = ALL_CLASSES.index(cls)
        segments.append(
            dict(
                id=seg_id,
                category_id=category_id(cls),
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


def _categories(things_only: bool) -> List[dict]:
    """COCO categories; panoptic ones carry ``isthing`` and a colour."""
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
                                                    city_dir, 'synth')
        paths[f'cityscapes_{split}_ann'] = osp.join(city, 'gtFine', city_dir,
                                                    'synth')
    return paths


def _write_png(path: str, array: np.ndarray) -> None:
    """Write a PNG (RGB arrays are given in RGB order)."""
    if array.ndim == 3:
        array = array[..., ::-1]
    if not cv2.imwrite(path, array):
        raise OSError(f'could not write {path}')


def _write_split(split: str, paths: Dict[str, str], seed: int, size: Size,
                 num_images: int, first_id: int) -> None:
    """Generate one split and write it in all three layouts."""
    height, width = size
    stream = SPLITS[split][3]
    for key in ('coco_{}_img', 'panoptic_{}_seg', 'ade_{}_img', 'ade_{}_ann',
                'cityscapes_{}_img', 'cityscapes_{}_ann'):
        os.makedirs(paths[key.format(split)], exist_ok=True)
    images, inst_anns, pan_anns = [], [], []
    for index in range(num_images):
        img_id = first_id + index
        name = f'{img_id:012d}'
        sample = _make_sample(seed, stream, index, size)
        ok, jpg = cv2.imencode('.jpg', sample['image'][..., ::-1],
                               [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise RuntimeError(f'JPEG encoding failed for image {name}')
        # The PNG copy holds the decoded JPEG pixels: one image everywhere.
        decoded = cv2.imdecode(jpg, cv2.IMREAD_COLOR)
        for key in (f'coco_{split}_img', f'ade_{split}_img'):
            with open(osp.join(paths[key], name + '.jpg'), 'wb') as f:
                f.write(jpg.tobytes())
        cv2.imwrite(
            osp.join(paths[f'cityscapes_{split}_img'],
                     f'{name}_leftImg8bit.png'), decoded)
        images.append(
            dict(
                id=img_id, file_name=name + '.jpg', height=height,
                width=width))

        for thing in sample['things']:
            mask = thing['mask']
            if thing['as_polygon']:
                segm = [thing['polygon']]
            else:
                segm = _encode_rle(mask, compressed=not thing['iscrowd'])
            inst_anns.append(
                dict(
                    id=len(inst_anns) + 1,
                    image_id=img_id,
                    category_id=category_id(thing['cls']),
                    segmentation=segm,
                    area=int(mask.sum()),
                    bbox=_mask_bbox(mask),
                    iscrowd=int(thing['iscrowd'])))

        pan, sem, segments = _panoptic_and_semantic(sample, height, width)
        _write_png(
            osp.join(paths[f'panoptic_{split}_seg'], name + '.png'),
            _id_to_rgb(pan))
        pan_anns.append(
            dict(
                image_id=img_id,
                file_name=name + '.png',
                segments_info=segments))
        _write_png(
            osp.join(paths[f'ade_{split}_ann'], name + '.png'),
            (sem + 1).astype(np.uint8))
        _write_png(
            osp.join(paths[f'cityscapes_{split}_ann'],
                     f'{name}_gtFine_labelTrainIds.png'),
            np.where(sem < 0, 255, sem).astype(np.uint8))

    info = dict(description='Mask DINO synthetic shapes', version='1.0')
    with open(paths[f'instances_{split}'], 'w') as f:
        json.dump(
            dict(
                info=info,
                images=images,
                annotations=inst_anns,
                categories=_categories(things_only=True)), f)
    with open(paths[f'panoptic_{split}'], 'w') as f:
        json.dump(
            dict(
                info=info,
                images=images,
                annotations=pan_anns,
                categories=_categories(things_only=False)), f)


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


def _validate_split(split: str, paths: Dict[str, str]) -> Dict[str, int]:
    """Check one split's files against each other; returns counts."""
    inst_path, pan_path = paths[f'instances_{split}'], paths[
        f'panoptic_{split}']
    inst, pan = _load_json(inst_path), _load_json(pan_path)
    _check([c['name'] for c in inst['categories']] == list(THING_CLASSES),
           inst_path, 'categories are not THING_CLASSES')
    _check([c['name'] for c in pan['categories']] == list(ALL_CLASSES),
           pan_path, 'categories are not ALL_CLASSES')
    _check(
        len(inst['images']) == len(pan['annotations']), pan_path,
        'one panoptic annotation per image expected')
    anns_by_img: Dict[int, List[dict]] = {}
    for ann in inst['annotations']:
        anns_by_img.setdefault(ann['image_id'], []).append(ann)
    counts = dict(images=0, instances=0, crowd=0, polygons=0, rle=0)
    for img_info, pan_ann in zip(inst['images'], pan['annotations']):
        h, w = img_info['height'], img_info['width']
        name = osp.splitext(img_info['file_name'])[0]
        _check(pan_ann['image_id'] == img_info['id'], pan_path,
               f'image order differs at {name}')
        png_path = osp.join(paths[f'panoptic_{split}_seg'],
                            pan_ann['file_name'])
        rgb = _read_png(png_path, cv2.IMREAD_COLOR)[..., ::-1].astype(np.int64)
        _check(rgb.shape[:2] == (h, w), png_path, 'wrong size')
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]
        segs = {s['id']: s for s in pan_ann['segments_info']}
        _check(
            set(np.unique(ids)) - {0} == set(segs), png_path,
            'PNG ids differ from the json segments_info')
        expected_sem = np.full((h, w), -1, np.int64)
        for seg_id, seg in segs.items():
            mask = ids == seg_id
            _check(
                int(mask.sum()) == seg['area'], png_path,
                f'segment {seg_id}: area {seg["area"]} != {mask.sum()}')
            _check(
                _mask_bbox(mask) == seg['bbox'], png_path,
                f'segment {seg_id}: bbox is not the mask extent')
            expected_sem[mask] = seg['category_id'] - 1
        ade_path = osp.join(paths[f'ade_{split}_ann'], name + '.png')
        ade = _read_png(ade_path).astype(np.int64)
        _check(
            np.array_equal(ade, expected_sem + 1), ade_path,
            'differs from the panoptic map')
        _check((ade == 0).any(), ade_path, 'no ignore (0) pixels')
        city_path = osp.join(paths[f'cityscapes_{split}_ann'],
                             f'{name}_gtFine_labelTrainIds.png')
        city = _read_png(city_path).astype(np.int64)
        _check(
            np.array_equal(city, np.where(expected_sem < 0, 255,
                                          expected_sem)), city_path,
            'differs from the panoptic map')
        jpg_path = osp.join(paths[f'coco_{split}_img'], img_info['file_name'])
        jpg = _read_png(jpg_path, cv2.IMREAD_COLOR)
        for other in (osp.join(paths[f'ade_{split}_img'], name + '.jpg'),
                      osp.join(paths[f'cityscapes_{split}_img'],
                               f'{name}_leftImg8bit.png')):
            _check(
                np.array_equal(_read_png(other, cv2.IMREAD_COLOR), jpg), other,
                f'pixels differ from {jpg_path}')

        thing_segs = sorted(
            (s for s in segs.values() if s['category_id'] <= NUM_THINGS),
            key=lambda s: s['id'])
        anns = anns_by_img.get(img_info['id'], [])
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
            # Each instance is exactly one panoptic thing segment.
            match = [
                s for s in thing_segs if np.array_equal(ids == s['id'], mask)
            ]
            _check(
                len(match) == 1
                and match[0]['category_id'] == ann['category_id']
                and match[0]['iscrowd'] == ann['iscrowd'], inst_path,
                f'annotation {ann["id"]} has no identical panoptic segment')
            counts['crowd'] += ann['iscrowd']
            is_poly = isinstance(ann['segmentation'], list)
            counts['polygons'] += int(is_poly)
            counts['rle'] += int(not is_poly)
        counts['images'] += 1
        counts['instances'] += len(anns)
    return counts


def validate_dataset(root: str) -> Dict[str, Dict[str, int]]:
    """Check that a generated dataset is self-consistent.

    Checks, for every image: panoptic PNG ids equal the json segment ids,
    segment areas and boxes equal those of the PNG masks, ADE and Cityscapes
    maps equal the panoptic classes (with the same void pixels, and some
    void present), the three image copies have identical pixels, and every
    instance annotation decodes (polygon or RLE) to exactly one panoptic
    thing segment with the same class, crowd flag, area and box.

    Args:
        root (str): The dataset root given to :func:`make_dataset`.

    Returns:
        dict: Per split, counts of images, instances, crowd instances,
        polygon and RLE annotations.

    Raises:
        DatasetError: naming the offending file and what is wrong.
    """
    paths = _layout_paths(root)
    return {split: _validate_split(split, paths) for split in SPLITS}


# -------------------------------------------------------------------- entry
def _check_args(out: str, num_train: int, num_val: int, size: Sequence[int],
                seed: int) -> Tuple[int, int]:
    """Validate the arguments; returns ``size`` as (H, W)."""
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
                 validate: bool = True) -> Dict[str, str]:
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

    Returns:
        dict[str, str]: Paths of the roots, image folders and annotation
        files, e.g. ``coco_root``, ``instances_val``, ``panoptic_val``,
        ``panoptic_val_seg``, ``ade_root``, ``cityscapes_root``.
    """
    height, width = _check_args(out, num_train, num_val, size, seed)
    out = osp.abspath(out)
    parent = osp.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = osp.join(parent, f'.{osp.basename(out)}.tmp-{os.getpid()}')
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp_paths = _layout_paths(tmp)
        _write_split('train', tmp_paths, seed, (height, width), num_train, 1)
        _write_split('val', tmp_paths, seed, (height, width), num_val,
                     num_train + 1)
        stats = validate_dataset(tmp) if validate else None
        with open(osp.join(tmp, MARKER), 'w') as f:
            json.dump(
                dict(
                    num_train=num_train,
                    num_val=num_val,
                    size=[height, width],
                    seed=seed,
                    thing_classes=list(THING_CLASSES),
                    stuff_classes=list(STUFF_CLASSES),
                    stats=stats),
                f,
                indent=1)
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


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate the synthetic shapes dataset (COCO instance, '
        'COCO panoptic, ADE20K and Cityscapes layouts).')
    parser.add_argument(
        '--out',
        default='data/synthetic',
        help='dataset root (default: data/synthetic)')
    parser.add_argument(
        '--num-train',
        type=int,
        default=200,
        help='number of training images (default: 200)')
    parser.add_argument(
        '--num-val',
        type=int,
        default=50,
        help='number of validation images (default: 50)')
    parser.add_argument(
        '--size',
        type=int,
        nargs=2,
        default=[128, 128],
        metavar=('H', 'W'),
        help='image height and width (default: 128 128)')
    parser.add_argument(
        '--seed', type=int, default=0, help='random seed (default: 0)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    start = time.time()
    try:
        paths = make_dataset(args.out, args.num_train, args.num_val,
                             tuple(args.size), args.seed)
    except (ValueError, OSError) as e:
        sys.exit(f'make_synthetic_dataset: error: {e}')
    with open(osp.join(paths['root'], MARKER)) as f:
        stats = json.load(f)['stats']
    print(f'wrote {paths["root"]} in {time.time() - start:.1f}s '
          '(validated):')
    for split, c in stats.items():
        print(f'  {split}: {c["images"]} images, {c["instances"]} thing '
              f'instances ({c["crowd"]} crowd, {c["polygons"]} polygons, '
              f'{c["rle"]} RLE)')


if __name__ == '__main__':
    main()
