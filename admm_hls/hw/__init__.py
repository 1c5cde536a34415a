"""The backend-neutral hardware plan, decided once per build: lanes (PEs) per layer, the
lockstep weight streams, feature-map banking, placement, the memory budget and the cycle model.
Both backends (``backends.hls``, ``backends.rtl``) render from it and never from each other."""
