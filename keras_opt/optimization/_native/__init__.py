"""keras_opt's own compression engine for Keras 3 (no TFMOT).

Each compressed layer is a Keras 3 ``Wrapper`` that carries its whole plan:
masks, step counter, centroids and cluster indices are variables, and the
schedule is config. All per-step work runs in the wrapper's ``call``, inside
the train step. The wrapped layer's own ``call`` runs unchanged: the wrapper
substitutes the compressed kernel for the kernel variable through a Keras
``StatelessScope``, so every layer type with a kernel attribute works the same
way, and the gradient reaches the original variables.
"""

from __future__ import annotations

from keras_opt.optimization._native.clustering import ClusterWeights
from keras_opt.optimization._native.engine import NativeEngine
from keras_opt.optimization._native.model import PrunedModel
from keras_opt.optimization._native.pruning import PruneLowMagnitude

__all__ = ["NativeEngine", "PruneLowMagnitude", "ClusterWeights", "PrunedModel"]
