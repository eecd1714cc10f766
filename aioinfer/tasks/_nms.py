"""Non-maximum suppression (OpenCV's), on boxes given as (x1, y1, x2, y2)."""

from __future__ import annotations

import cv2
import numpy as np


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    *,
    class_ids: np.ndarray | None = None,
    max_keep: int | None = None,
) -> np.ndarray:
    """Indices of the boxes kept, highest score first.

    A box is dropped when it overlaps a better-scoring kept box (of the same class, when
    ``class_ids`` is given) with an IoU above ``iou_threshold``. At most ``max_keep`` are kept;
    a box scoring 0 never is.
    """
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    boxes = np.asarray(boxes, np.float64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()
    score_list = np.asarray(scores, np.float64).tolist()
    top_k = max_keep or 0
    if class_ids is None:
        keep = cv2.dnn.NMSBoxes(xywh, score_list, 0.0, iou_threshold, top_k=top_k)
    else:
        keep = cv2.dnn.NMSBoxesBatched(
            xywh, score_list, np.asarray(class_ids).astype(int).tolist(), 0.0, iou_threshold, top_k=top_k
        )
    kept = np.asarray(keep, np.int64).reshape(-1)
    return kept[np.argsort(-np.asarray(scores)[kept], kind="stable")][: max_keep or None]
