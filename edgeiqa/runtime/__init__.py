"""runtime: score images with an exported model (ONNX, TensorRT) or a student checkpoint.

    from edgeiqa.runtime import Scorer
    scorer = Scorer.load("run/export/student.onnx")          # backend chosen by suffix
    results = scorer.score(["a.jpg", "photos/b.png"], batch_size=8)

Importing this package loads neither torch, timm nor the training code; only a `.pt`/run-folder model
(torch backend) or a TensorRT engine (device buffers) imports torch, when it is opened.
"""

from edgeiqa.runtime.items import ScoreResult
from edgeiqa.runtime.scorer import Scorer

__all__ = ["Scorer", "ScoreResult"]
