"""The LR finder's three suggestion rules on an (LR, smoothed loss) curve."""

from __future__ import annotations

import numpy as np

RULES = ("valley", "steepest", "minimum")


def suggest(lrs: list[float], smoothed: list[float]) -> dict[str, float]:
    """The three suggestion rules on an (lr, smoothed loss) curve.

    * ``"minimum"``: LR of the lowest smoothed loss, divided by 10.
    * ``"steepest"``: LR of the most negative slope of loss over log10(LR),
      before the minimum.
    * ``"valley"``: fastai's rule — find the longest decreasing stretch of
      the curve and take the point ``len/3 + len/6`` into it.

    Args:
        lrs: List of floats.
        smoothed: List of floats, same length.

    Returns:
        Dict rule -> LR.
    """
    lrs_a = np.asarray(lrs, dtype=np.float64)
    loss = np.asarray(smoothed, dtype=np.float64)
    finite = np.isfinite(loss)
    n = int(np.argmin(finite)) if not finite.all() else len(loss)
    lrs_a, loss = lrs_a[:n], loss[:n]
    if n < 3:
        raise ValueError(
            f"The LR sweep recorded only {n} finite losses, too few to suggest an LR. "
            "Lower `start_lr` or raise `num_steps`."
        )
    i_min = int(np.argmin(loss))
    out = {"minimum": float(lrs_a[i_min] / 10.0)}
    grad = np.gradient(loss, np.log10(lrs_a))
    # Skip the first 10% (the smoothed curve is still dominated by a few
    # batches there) and stop at the minimum.
    skip = min(max(n // 10, 1), max(i_min - 1, 0))
    upto = max(i_min, skip + 1)
    out["steepest"] = float(lrs_a[skip + int(np.argmin(grad[skip:upto]))])
    # fastai valley: longest decreasing subsequence.
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if loss[i] < loss[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    out["valley"] = float(lrs_a[min(max(idx, 0), n - 1)])
    return out
