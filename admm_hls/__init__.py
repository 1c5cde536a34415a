"""admm-hls: ADMM-compressed neural networks to FPGA kernels."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: `import admm_hls` stays cheap for the CLI; torch loads only when lowering.
    if name == "lower":
        from .ir.lower import lower

        return lower
    if name in ("reference", "report", "compress"):
        # ``compress`` is the compression package, callable as the Python API (api.compress).
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(name)
