"""Evaluation: the EMO paper's Table 1 (FID, FVD, Sync-C/Sync-D, F-SIM, E-FID) from placed metric weights.

``frechet`` (the one Fréchet distance), ``inception`` / ``i3d`` / ``syncnet`` (the metric networks,
keyed like their published weight files), ``expression`` (E-FID's blendshape substitute),
``weights`` (where files live, loading, hashes), ``videos`` (pairing, decoding), ``metrics``
(per-metric feature extraction and protocol), ``evaluate`` (the report), ``command`` (the CLI).
Nothing heavy is imported here.
"""
