"""synthseg-bids: SynthSeg-style contrast-agnostic brain segmentation as a BIDS-App.

The package is layered (imports point down only)::

    cli -> workflows -> interfaces -> inference | training | generator | network -> core

``synthseg_bids.core`` depends on numpy, scipy and nibabel only; TensorFlow/Keras are
imported lazily by the modules that need them, so ``import synthseg_bids`` is fast.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
