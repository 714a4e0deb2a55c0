"""synthseg-bids: SynthSeg-style contrast-agnostic brain segmentation as a BIDS-App.

The package is layered (imports point down only)::

    cli -> workflows -> interfaces -> inference | training | generator | network -> core

``synthseg_bids.core`` depends on numpy, scipy and nibabel only; TensorFlow/Keras are
imported lazily by the modules that need them, so ``import synthseg_bids`` is fast.
"""

import os

# Before anything imports JAX: allocate GPU memory on demand instead of 75 % of the card at start,
# so several processes share one GPU (set XLA_PYTHON_CLIENT_PREALLOCATE=true to get JAX's default).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

__version__ = "0.1.0"

__all__ = ["__version__"]
