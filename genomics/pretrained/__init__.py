"""Published DNA checkpoints in and out: HyenaDNA (LongSafari, both Hub layouts) and Caduceus
(kuleshov-group, Ph and PS). ``detect(src)``, ``import_checkpoint(src, out, ...)``,
``load_pretrained(src, norm=None, alpha_init=0.5)`` and ``export_run(run_dir, fmt, out)``;
see docs/pretrained-checkpoints.md."""
from genomics.pretrained.export import export_run
from genomics.pretrained.importer import detect, import_checkpoint, load_pretrained

__all__ = ["detect", "import_checkpoint", "load_pretrained", "export_run"]
