"""The scoring pipeline: decode + views in worker threads, batched inference, results in input order.

    items --(bounded window of futures)--> workers: load_image + make_views --> batches of N --> model

- Memory stays flat whatever the number of items: at most `window` items are in flight (decoded views
  waiting for their batch), the input iterator is consumed lazily and results are yielded as they are done.
- Order and batches are fixed by the input order, not by which worker finishes first, so the same inputs
  always form the same batches; results come out in input order.
- Threads, not processes: Pillow's decoders and resizers and onnxruntime release the GIL, and threads share
  the model and cost nothing to start (a cold start matters on the device).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np

from edgeiqa.runtime.items import Listed, result_for


def shape_key(views: dict[str, np.ndarray]) -> tuple:
    """The views' names and shapes: items batched together must share it (a `full` view keeps each image's size)."""
    return tuple((k, v.shape) for k, v in views.items())


def score_stream(scorer, items: Iterable, batch_size: int = 8, workers: int = 1,
                 window: int | None = None) -> Iterator:
    """Yield one ScoreResult per item, in input order (see the module docstring). `scorer` is a
    `edgeiqa.runtime.Scorer` (its `safe_preprocess`, `infer` and `has_full` are what this loop uses)."""
    window = window or max(2 * batch_size, 4 * workers)
    source = iter(enumerate(items))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgeiqa-decode") if workers > 1 else None
    inflight: deque = deque()
    group: list = []  # results in input order, not yet yielded
    pending: list = []  # (result, views) waiting for inference

    def fill():
        while len(inflight) < window:
            nxt = next(source, None)
            if nxt is None:
                return
            index, item = nxt
            res = result_for(index, item)
            if isinstance(item, Listed):
                inflight.append((res, None, None))
            elif pool is not None:
                inflight.append((res, pool.submit(scorer.safe_preprocess, item), None))
            else:
                inflight.append((res, None, item))  # decoded when its turn comes: nothing held early

    try:
        while True:
            fill()
            if not inflight:
                break
            res, fut, item = inflight.popleft()
            if fut is not None or item is not None:
                out, err = fut.result() if fut is not None else scorer.safe_preprocess(item)
                if err is not None:
                    res.error = err
                else:
                    views, info = out
                    res.info.update(info)
                    if scorer.has_full and pending and shape_key(pending[0][1]) != shape_key(views):
                        scorer.infer(pending)  # a batch needs one shape per view
                        pending = []
                        yield from group
                        group = []
                    pending.append((res, views))
            group.append(res)
            # Flush a full batch; yield errors at once when nothing waits for inference (so a folder of
            # non-images streams too); cap the results held back by a pending partial batch.
            if len(pending) >= batch_size or not pending or len(group) >= 4 * batch_size:
                scorer.infer(pending)
                pending = []
                yield from group
                group = []
        scorer.infer(pending)
        yield from group
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
