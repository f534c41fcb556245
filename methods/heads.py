"""Classifier pieces shared by the adapter methods that train a head with their body.

SEMA and MOS train a linear head over all classes seen so far while the
current task's data contains only new classes; both mask the old classes'
logits out of the loss (PILOT's ``logits[:, :known] = -inf``) so that a task
never pushes old classes down: the old rows of the head get no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, known_classes: int) -> torch.Tensor:
    """Cross-entropy over the classes ``>= known_classes`` only (old logits set to -inf).

    ``masked_fill`` (not in-place assignment) keeps the logits' graph intact: the
    masked entries get an exactly zero gradient.
    """
    if known_classes == 0:
        return F.cross_entropy(logits, targets)
    mask = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
    mask[:known_classes] = True
    return F.cross_entropy(logits.masked_fill(mask, float("-inf")), targets)



def old_class_count(seen_classes: int, new_classes: int) -> int:
    """How many leading logits to mask for a task: the classes learned before it.

    A task that brings no new classes (a new domain of known classes) masks
    nothing, since all its labels are old ones.
    """
    return seen_classes - new_classes if new_classes else 0
