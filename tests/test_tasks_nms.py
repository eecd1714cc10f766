"""Non-maximum suppression against hand-computed overlaps."""

from __future__ import annotations

import numpy as np

from aioinfer.tasks._nms import nms

BOXES = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]], float)
SCORES = np.array([0.9, 0.8, 0.7, 0.95])


def test_overlapping_boxes_are_suppressed_by_iou():
    # IoU(box0, box1) = 90 / 110 = 0.818; box3 duplicates box0 with a higher score
    assert nms(BOXES, SCORES, 0.81).tolist() == [3, 2]
    assert nms(BOXES, SCORES, 0.82).tolist() == [3, 1, 2]


def test_per_class_and_max_keep():
    assert nms(BOXES, SCORES, 0.5, class_ids=np.array([0, 1, 0, 0])).tolist() == [3, 1, 2]
    assert nms(BOXES, SCORES, 0.5, max_keep=1).tolist() == [3]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
