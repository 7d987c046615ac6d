"""export: a trained student (RUN/student.pt + card.json) -> a deployable artefact with its metadata.

    from edgeiqa.export import export_model
    res = export_model("runs/sample", "onnx-int8", calib="sample", imgs=128)
    res.path, res.metadata["gmacs"], res.parity

Formats, their suffixes, devices and accepted flags are in `edgeiqa.export.formats.FORMATS`; each row's
export function and the steps every export shares are in `edgeiqa.export.exporter`. Import-light (no
torch at import): the runtime reads the formats table through this package.
"""

from edgeiqa.export.exporter import EXPORTERS, ExportResult, export_model, resolve_run
from edgeiqa.export.formats import FORMATS, get_format

__all__ = ["EXPORTERS", "ExportResult", "export_model", "resolve_run", "FORMATS", "get_format"]
