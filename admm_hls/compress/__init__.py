"""ADMM compression (ADMM-NN): joint weight pruning and weight quantization.

The package is also the Python entry point: ``admm_hls.compress(model, train_loader,
test_loader, ...)`` calls ``api.compress``. A package attribute named like the package cannot be
a plain function (importing any ``admm_hls.compress.*`` module rebinds ``admm_hls.compress`` to
the package), so the package itself is made callable.
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from .api import compress

        return compress(*args, **kwargs)

    @property
    def __signature__(self):
        import inspect

        from .api import compress

        return inspect.signature(compress)


sys.modules[__name__].__class__ = _CallablePackage
