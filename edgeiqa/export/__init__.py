"""export: a trained student (RUN/student.pt + card.json) -> a deployable artefact with its metadata.

    from edgeiqa.export import export_model
    res = export_model("runs/sample", "onnx-int8", calib="sample", imgs=128)
    res.path, res.metadata["gmacs"], res.parity

Formats, their suffixes, devices and accepted flags are in `edgeiqa.export.formats.FORMATS`; each row's
export function and the steps every export shares are in `edgeiqa.export.exporter`. Import-light (no
torch at import). The names below are imported on first use (PEP 562): the runtime imports
`edgeiqa.export.metadata` and `edgeiqa.export.formats` at load, and importing the package must not pull in
the exporter and its provenance code (importlib.metadata, ...), which cost the cold start of `edgeiqa score`.
"""

import importlib

_LAZY = {"EXPORTERS": "exporter", "ExportResult": "exporter", "export_model": "exporter",
         "resolve_run": "exporter", "FORMATS": "formats", "get_format": "formats"}

__all__ = list(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
