"""Project writing: the hardware plan, both backends' files, test vectors and the manifest,
written atomically and deterministically.

    from admm_hls.build import build
    project = build(graph, "hls/", pe=4)
"""


def __getattr__(name):
    # Lazy: importing the package does not load the backends.
    if name in ("build", "open_project", "Project"):
        from . import project

        return getattr(project, name)
    raise AttributeError(name)
