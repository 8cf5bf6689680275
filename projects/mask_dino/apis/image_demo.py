"""Image demo: predict with a Mask DINO model on images, draw pictures and
save the results in standard formats.

:func:`run_image_demo` does what ``tools/demo/image_demo.py`` (its command
line) does: :func:`collect_images` expands the inputs,
:func:`build_inferencer` switches the requested tasks on,
:func:`resolve_category_ids` picks the json category ids and
:class:`ImageDemo` writes, under its output folder, ``vis/<task>/`` pictures
(MMDetection's ``DetLocalVisualizer``), ``instance/results.json`` (COCO
results), ``panoptic/`` (COCO panoptic json and PNGs), ``semantic/`` label
maps and ``summary.json``. The formats are described in the command's
``--help``.
"""
import copy
import glob
import json
import os
import os.path as osp
import time
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import mmcv
import numpy as np
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.structures import PixelData
from panopticapi.utils import id2rgb
from pycocotools import mask as mask_util

from ..engine import merge_cfg_options
from ..utils.dataset_meta import test_dataset_cfg
from .inferencer import MaskDINOInferencer

TASKS = ('instance', 'panoptic', 'semantic')
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


# ----------------------------------------------------------------------
# model
# ----------------------------------------------------------------------
def build_inferencer(
        config: Union[str, Config],
        checkpoint: Optional[str],
        device: Optional[str] = None,
        task: str = 'auto',
        cfg_options: Optional[dict] = None,
        palette: str = 'none') -> Tuple[MaskDINOInferencer, List[str]]:
    """Build the inferencer with the requested tasks switched on.

    Args:
        config (str or :obj:`Config`): Config file or loaded config.
        checkpoint (str, optional): Checkpoint file.
        device (str, optional): Device; None picks CUDA when available.
        task (str): 'auto' (the config's ``test_cfg``), 'instance',
            'panoptic' or 'semantic'.
        cfg_options (dict, optional): Config overrides.
        palette (str): See :class:`MaskDINOInferencer`.

    Returns:
        tuple: The inferencer and the list of tasks it predicts.
    """
    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    elif osp.isfile(config):
        cfg = Config.fromfile(config)
    else:
        raise FileNotFoundError(f'config file not found: {config}')
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint file not found: {checkpoint}')
    merge_cfg_options(cfg, cfg_options)  # data_root=ROOT moves the paths
    cfg.model.backbone.init_cfg = None  # weights come from the checkpoint
    if 'visualizer' in cfg:  # pictures are written by this script
        cfg.visualizer.vis_backends = None
    test_cfg = cfg.model.test_cfg
    if task == 'auto':
        tasks = [t for t in TASKS if test_cfg.get(f'{t}_on', t == TASKS[0])]
    elif task in TASKS:
        tasks = [task]
        # only compute what is asked for
        test_cfg.update({f'{t}_on': t == task for t in TASKS})
    else:
        raise ValueError(f'--task must be auto or one of {TASKS}, got '
                         f'{task!r}')
    if not tasks:
        raise ValueError(f'{config}: model.test_cfg switches no task on')
    inferencer = MaskDINOInferencer(
        cfg, checkpoint, device=device, palette=palette, show_progress=False)
    return inferencer, tasks


# ----------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------
def collect_images(inputs: Sequence[str]) -> List[str]:
    """Expand files, folders (sorted, non-recursive) and glob patterns.

    Raises:
        FileNotFoundError: When an input matches no image.
    """
    files = []
    for item in inputs:
        if osp.isdir(item):
            found = sorted(
                osp.join(item, name) for name in os.listdir(item)
                if name.lower().endswith(IMG_EXTENSIONS))
        elif osp.isfile(item):
            found = [item]
        else:
            found = sorted(
                path for path in glob.glob(item, recursive=True)
                if path.lower().endswith(IMG_EXTENSIONS))
        if not found:
            raise FileNotFoundError(f'no image found for input {item!r}')
        files.extend(found)
    return files


def unique_names(files: Sequence[str]) -> List[str]:
    """File stems, made unique with a suffix where two are equal."""
    names, seen = [], {}
    for path in files:
        stem = osp.splitext(osp.basename(path))[0]
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(stem if count == 0 else f'{stem}_{count}')
    return names


def image_ids(names: Sequence[str]) -> List[int]:
    """COCO image ids: the names when all are distinct numbers."""
    if all(n.isdigit()
           for n in names) and len(set(map(int, names))) == len(names):
        return [int(n) for n in names]
    return list(range(1, len(names) + 1))


# ----------------------------------------------------------------------
# results in standard formats
# ----------------------------------------------------------------------
def category_ids_from(ann_file: str, classes: Sequence[str]) -> List[int]:
    """Category id of each class in a COCO (instance or panoptic)
    annotation file, matched by name."""
    with open(ann_file) as f:
        categories = json.load(f).get('categories', [])
    by_name = {c['name']: c['id'] for c in categories}
    missing = [c for c in classes if c not in by_name]
    if missing:
        raise ValueError(f'{ann_file}: no category named {missing}')
    return [by_name[c] for c in classes]


def config_ann_file(cfg: Config) -> Optional[str]:
    """The COCO json of the config's test dataset, if it is on disk."""
    dataset = test_dataset_cfg(cfg)
    ann_file = dataset.get('ann_file') or ''
    if not ann_file.endswith('.json'):
        return None
    path = osp.join(dataset.get('data_root') or '', ann_file)
    return path if osp.isfile(path) else None


def resolve_category_ids(ann_file: Optional[str], cfg: Config,
                         classes: Sequence[str]) -> Optional[List[int]]:
    """Category id of each class: from ``ann_file`` (errors are fatal),
    else from the config's test json when it names every class, else None
    (``label + 1``) with a warning."""
    if ann_file:
        return category_ids_from(ann_file, classes)
    cfg_file = config_ann_file(cfg)
    if cfg_file:
        try:
            return category_ids_from(cfg_file, classes)
        except ValueError as exc:
            reason = str(exc)
    else:
        reason = "the config's test dataset has no COCO json on this machine"
    print(f'category ids in the json results are label + 1 ({reason}); '
          'pass --ann-file to use a dataset\'s ids')
    return None


def instance_results(sample: DetDataSample,
                     image_id: int,
                     cat_ids: Optional[Sequence[int]] = None) -> List[dict]:
    """COCO results entries (bbox xywh, RLE segmentation) of one image;
    category ids are ``cat_ids[label]`` (default ``label + 1``)."""
    pred = sample.pred_instances.cpu()
    results = []
    for box, label, score, mask in zip(pred.bboxes.tolist(),
                                       pred.labels.tolist(),
                                       pred.scores.tolist(), pred.masks):
        rle = mask_util.encode(
            np.asfortranarray(mask.numpy().astype(np.uint8)))
        rle['counts'] = rle['counts'].decode()
        x0, y0, x1, y1 = box
        results.append(
            dict(
                image_id=image_id,
                category_id=cat_ids[label] if cat_ids else label + 1,
                bbox=[x0, y0, x1 - x0, y1 - y0],
                score=score,
                segmentation=rle))
    return results


def panoptic_segments(
        pan: np.ndarray,
        num_classes: int,
        num_things: int,
        cat_ids: Optional[Sequence[int]] = None
) -> Tuple[np.ndarray, List[dict]]:
    """COCO panoptic segment ids and ``segments_info`` of one map.

    Args:
        pan (np.ndarray): (H, W) map of ``label + id * INSTANCE_OFFSET``;
            void pixels are ``num_classes``.
        num_classes (int): Number of classes.
        num_things (int): Number of thing classes (first labels).
        cat_ids (Sequence[int], optional): Category id of each label;
            default ``label + 1``.

    Returns:
        tuple: (H, W) int segment-id map (0 = void) and the segments.
    """
    ids = np.zeros(pan.shape, np.int64)
    segments = []
    for value in np.unique(pan):
        label = int(value % INSTANCE_OFFSET)
        if label == num_classes:
            continue
        mask = pan == value
        ys, xs = np.nonzero(mask)
        seg_id = len(segments) + 1
        ids[mask] = seg_id
        x0, y0 = int(xs.min()), int(ys.min())
        segments.append(
            dict(
                id=seg_id,
                category_id=cat_ids[label] if cat_ids else label + 1,
                iscrowd=0,
                isthing=int(label < num_things),
                area=int(mask.sum()),
                bbox=[x0, y0,
                      int(xs.max()) - x0 + 1,
                      int(ys.max()) - y0 + 1]))
    return ids, segments


# ----------------------------------------------------------------------
# pictures
# ----------------------------------------------------------------------
def task_sample(sample: DetDataSample, task: str) -> DetDataSample:
    """A data sample holding only ``task``'s predictions, so the
    visualizer draws one task per picture."""
    field = dict(
        instance='pred_instances',
        panoptic='pred_panoptic_seg',
        semantic='pred_sem_seg')[task]
    out = DetDataSample(metainfo=sample.metainfo)
    out.set_field(getattr(sample, field).cpu(), field)
    return out


def enlarge(image: np.ndarray, sample: DetDataSample,
            factor: int) -> Tuple[np.ndarray, DetDataSample]:
    """Upscale an image and its predictions by an integer factor (masks and
    maps by pixel repetition, so they stay exact); boxes are clipped to the
    last pixel so that the visualizer draws them inside the picture."""
    h, w = image.shape[:2]
    if factor > 1:
        image = cv2.resize(
            image, (w * factor, h * factor), interpolation=cv2.INTER_CUBIC)

    def rep(x: torch.Tensor) -> torch.Tensor:
        if factor == 1:
            return x
        return x.repeat_interleave(factor, -1).repeat_interleave(factor, -2)

    sample = sample.clone()  # shallow: replace fields, never mutate them
    if 'pred_instances' in sample:
        inst = sample.pred_instances.clone()
        bboxes = inst.bboxes * factor
        bboxes[:, 0::2] = bboxes[:, 0::2].clamp(0, w * factor - 1)
        bboxes[:, 1::2] = bboxes[:, 1::2].clamp(0, h * factor - 1)
        inst.bboxes = bboxes
        if 'masks' in inst:
            inst.masks = rep(inst.masks)
        sample.pred_instances = inst
    for field in ('pred_panoptic_seg', 'pred_sem_seg'):
        if field in sample:
            data = getattr(sample, field)
            sample.set_field(
                PixelData(metainfo=data.metainfo, sem_seg=rep(data.sem_seg)),
                field)
    return image, sample


def draw_legend(
    image: np.ndarray,
    entries: Sequence[Tuple[str, tuple]],
) -> np.ndarray:
    """Append a legend (colour swatch + text per entry) below an image.

    Args:
        image (np.ndarray): (H, W, 3) RGB uint8.
        entries (list[tuple]): (text, RGB colour) pairs.

    Returns:
        np.ndarray: (H + h, W, 3) RGB uint8.
    """
    width = image.shape[1]
    font, scale, thick, pad, box = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1, 6, 14
    row_h = box + pad
    # lay the entries out in rows that fit the width
    layout, x, y = [], pad, pad
    for text, color in entries:
        (tw, _), _ = cv2.getTextSize(text, font, scale, thick)
        item_w = box + 4 + tw + 2 * pad
        if x + item_w > width and x > pad:
            x, y = pad, y + row_h
        layout.append((x, y, text, color))
        x += item_w
    legend = np.full((y + row_h + pad // 2, width, 3), 255, np.uint8)
    for x, y, text, color in layout:
        cv2.rectangle(legend, (x, y), (x + box, y + box),
                      tuple(int(c) for c in color), -1)
        cv2.rectangle(legend, (x, y), (x + box, y + box), (0, 0, 0), 1)
        cv2.putText(legend, text, (x + box + 4, y + box - 2), font, scale,
                    (0, 0, 0), thick, cv2.LINE_AA)
    return np.concatenate([image, legend], axis=0)


def semantic_legend_entries(sem_seg: np.ndarray, classes: Sequence[str],
                            palette: Sequence[tuple]) -> List[tuple]:
    """Legend entries of the classes present, largest area first."""
    labels, counts = np.unique(sem_seg, return_counts=True)
    keep = labels < len(classes)
    labels, counts = labels[keep], counts[keep]
    order = np.argsort(-counts, kind='stable')
    total = sem_seg.size
    return [(f'{classes[labels[i]]} {100 * counts[i] / total:.0f}%',
             palette[labels[i]]) for i in order]


# ----------------------------------------------------------------------
# the demo
# ----------------------------------------------------------------------
class ImageDemo:
    """Predict, draw and save results for a list of images.

    Args:
        inferencer (:obj:`MaskDINOInferencer`): The model.
        tasks (list[str]): Tasks to draw and save.
        out_dir (str): Output folder.
        score_thr (float): Minimum instance score to draw.
        vis_size (int): Images whose longer side is shorter are enlarged
            by an integer factor for drawing.
        cat_ids (Sequence[int], optional): COCO category id of each label
            in the json files; default ``label + 1``.
    """

    def __init__(self,
                 inferencer: MaskDINOInferencer,
                 tasks: Sequence[str],
                 out_dir: str,
                 score_thr: float = 0.3,
                 vis_size: int = 512,
                 cat_ids: Optional[Sequence[int]] = None) -> None:
        self.inferencer = inferencer
        self.tasks = list(tasks)
        self.out_dir = out_dir
        self.score_thr = score_thr
        self.vis_size = vis_size
        meta = inferencer.model.dataset_meta
        self.classes = list(meta['classes'])
        self.palette = meta['palette']
        head = inferencer.model.panoptic_fusion_head
        self.num_classes = head.num_classes
        self.num_things = head.num_things_classes
        self.cat_ids = list(cat_ids) if cat_ids else list(
            range(1, self.num_classes + 1))
        if len(self.cat_ids) != self.num_classes:
            raise ValueError(f'{len(self.cat_ids)} category ids for '
                             f'{self.num_classes} classes')

    @property
    def categories(self) -> List[dict]:
        """COCO categories of the json files."""
        return [
            dict(id=cat_id, name=name, isthing=int(i < self.num_things))
            for i, (cat_id,
                    name) in enumerate(zip(self.cat_ids, self.classes))
        ]

    def predict(self, image: np.ndarray) -> DetDataSample:
        """Run the model on one RGB image (H, W, 3)."""
        # DetInferencer's loader takes BGR arrays, like cv2.imread.
        out = self.inferencer(
            image[..., ::-1].copy(),
            return_datasamples=True,
            no_save_vis=True,
            no_save_pred=True)
        return out['predictions'][0]

    def draw(self, image: np.ndarray, sample: DetDataSample,
             task: str) -> np.ndarray:
        """Draw one task's predictions with ``DetLocalVisualizer``.

        Args:
            image (np.ndarray): (H, W, 3) RGB uint8.
            sample (:obj:`DetDataSample`): Predictions.
            task (str): 'instance', 'panoptic' or 'semantic'.

        Returns:
            np.ndarray: The picture, RGB uint8.
        """
        factor = max(1, -(-self.vis_size // max(image.shape[:2])))
        image, view = enlarge(image, task_sample(sample, task), factor)
        if self.nothing_to_draw(view, task):
            # DetLocalVisualizer fails on an empty panoptic map
            return image.copy()
        visualizer = self.inferencer.visualizer
        visualizer.add_datasample(
            task,
            image,
            view,
            draw_gt=False,
            pred_score_thr=self.score_thr,
            out_file=None)
        drawn = visualizer.get_image()
        if task == 'semantic':
            drawn = draw_legend(
                drawn,
                semantic_legend_entries(view.pred_sem_seg.sem_seg.numpy(),
                                        self.classes, self.palette))
        return drawn

    def nothing_to_draw(self, sample: DetDataSample, task: str) -> bool:
        """No instance above the threshold / no panoptic segment."""
        if task == 'instance':
            return not bool(
                (sample.pred_instances.scores > self.score_thr).any())
        if task == 'panoptic':
            pan = sample.pred_panoptic_seg.sem_seg
            return bool((pan % INSTANCE_OFFSET == self.num_classes).all())
        return False

    def run(self, files: Sequence[str], progress: bool = True) -> dict:
        """Predict on every file, write pictures and results.

        Returns:
            dict: The summary also written to ``summary.json``.
        """
        names, ids = unique_names(files), image_ids(unique_names(files))
        for task in self.tasks:
            os.makedirs(osp.join(self.out_dir, 'vis', task), exist_ok=True)
            os.makedirs(osp.join(self.out_dir, task), exist_ok=True)
        images, instances, panoptic, failed = [], [], [], []
        start = time.time()
        for path, name, image_id in track(
                list(zip(files, names, ids)), 'predict', progress):
            try:
                image = mmcv.imread(path, channel_order='rgb')
            except Exception as exc:  # noqa: BLE001 (report and go on)
                failed.append(dict(file=path, error=str(exc)))
                print(f'skipped {path}: cannot read it ({exc})')
                continue
            if image is None:
                failed.append(dict(file=path, error='not an image'))
                print(f'skipped {path}: not an image')
                continue
            entry = self.process(image, name, image_id, instances, panoptic)
            entry['file'] = path
            images.append(entry)
        seconds = time.time() - start
        return self.write_summary(images, instances, panoptic, failed, seconds)

    def process(self, image: np.ndarray, name: str, image_id: int,
                instances: List[dict], panoptic: List[dict]) -> dict:
        """Predict one image, save its pictures and per-image files and
        collect its instance / panoptic json entries."""
        sample = self.predict(image)
        h, w = image.shape[:2]
        entry = dict(id=image_id, file_name=name + '.png', height=h, width=w)
        for task in self.tasks:
            vis_file = osp.join(self.out_dir, 'vis', task, name + '.png')
            mmcv.imwrite(self.draw(image, sample, task)[..., ::-1], vis_file)
            entry[f'vis_{task}'] = vis_file
        if 'instance' in self.tasks:
            found = instance_results(sample, image_id, self.cat_ids)
            instances.extend(found)
            entry['num_instances'] = len(found)
            entry['num_instances_above_thr'] = sum(r['score'] > self.score_thr
                                                   for r in found)
        if 'panoptic' in self.tasks:
            pan = sample.pred_panoptic_seg.sem_seg[0].cpu().numpy()
            ids, segments = panoptic_segments(pan, self.num_classes,
                                              self.num_things, self.cat_ids)
            png = osp.join(self.out_dir, 'panoptic', name + '.png')
            mmcv.imwrite(id2rgb(ids)[..., ::-1], png)
            panoptic.append(
                dict(
                    image_id=image_id,
                    file_name=name + '.png',
                    segments_info=segments))
            entry['num_segments'] = len(segments)
        if 'semantic' in self.tasks:
            sem = sample.pred_sem_seg.sem_seg[0].cpu().numpy()
            dtype = np.uint8 if self.num_classes <= 255 else np.uint16
            png = osp.join(self.out_dir, 'semantic', name + '.png')
            cv2.imwrite(png, sem.astype(dtype))
            entry['semantic_classes'] = sorted(self.classes[i]
                                               for i in np.unique(sem))
        return entry

    def write_summary(self, images: List[dict], instances: List[dict],
                      panoptic: List[dict], failed: List[dict],
                      seconds: float) -> dict:
        """Write the json files; return the summary."""
        coco_images = [{
            k: e[k]
            for k in ('id', 'file_name', 'height', 'width')
        } for e in images]
        files = {}
        if 'instance' in self.tasks:
            files['instance'] = osp.join(self.out_dir, 'instance',
                                         'results.json')
            dump_json(instances, files['instance'])
        if 'panoptic' in self.tasks:
            files['panoptic'] = osp.join(self.out_dir, 'panoptic',
                                         'predictions.json')
            dump_json(
                dict(
                    images=coco_images,
                    annotations=panoptic,
                    categories=self.categories), files['panoptic'])
        summary = dict(
            tasks=self.tasks,
            classes=self.classes,
            categories=self.categories,
            score_thr=self.score_thr,
            images=images,
            failed=failed,
            files=files,
            seconds=round(seconds, 3))
        dump_json(summary, osp.join(self.out_dir, 'summary.json'))
        return summary


def dump_json(obj, path: str) -> None:
    """Write json, creating the folder."""
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    with open(path, 'w') as f:
        json.dump(obj, f)


def track(items: list, description: str, enabled: bool = True):
    """Iterate with a rich progress bar (plain iteration when disabled)."""
    if not enabled:
        yield from items
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress,
                               TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    columns = (TextColumn('{task.description}'), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn(), TextColumn('ETA'),
               TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task(description, total=len(items))
        for item in items:
            yield item
            bar.advance(task)


def run_image_demo(inputs: Sequence[str],
                   config: Union[str, Config],
                   checkpoint: Optional[str],
                   out_dir: str = 'outputs/image_demo',
                   device: Optional[str] = None,
                   task: str = 'auto',
                   score_thr: float = 0.3,
                   vis_size: int = 512,
                   palette: str = 'none',
                   ann_file: Optional[str] = None,
                   progress: bool = True,
                   cfg_options: Optional[dict] = None) -> dict:
    """Predict on images and write pictures and results under ``out_dir``.

    Args:
        inputs (Sequence[str]): Image files, folders or glob patterns.
        config (str or :obj:`Config`): Config file or loaded config.
        checkpoint (str, optional): Checkpoint file.
        out_dir (str): Output folder. Defaults to 'outputs/image_demo'.
        device (str, optional): Device; None picks CUDA when available.
        task (str): 'auto' (the config's ``test_cfg``), 'instance',
            'panoptic' or 'semantic'. Defaults to 'auto'.
        score_thr (float): Minimum instance score to draw (the json keeps
            all). Defaults to 0.3.
        vis_size (int): Smaller pictures are enlarged to about this size
            for drawing. Defaults to 512.
        palette (str): See :class:`MaskDINOInferencer`. Defaults to 'none'.
        ann_file (str, optional): COCO json whose category ids (matched by
            class name) the json results use; None: the config's test json
            if it exists, else ``label + 1``.
        progress (bool): Show a progress bar. Defaults to True.
        cfg_options (dict, optional): Config overrides.

    Returns:
        dict: The summary written to ``summary.json`` (tasks, classes,
        categories, images, failed inputs, files, seconds).
    """
    files = collect_images(inputs)
    inferencer, tasks = build_inferencer(
        config,
        checkpoint,
        device=device,
        task=task,
        cfg_options=cfg_options,
        palette=palette)
    cat_ids = resolve_category_ids(ann_file, inferencer.cfg,
                                   inferencer.model.dataset_meta['classes'])
    demo = ImageDemo(inferencer, tasks, out_dir, score_thr, vis_size, cat_ids)
    return demo.run(files, progress=progress)
