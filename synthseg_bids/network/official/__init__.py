"""SynthSeg's published networks (FreeSurfer's ``$FREESURFER_HOME/models/*.h5``) in Keras 3.

FreeSurfer 7.3+ installs five Keras 2 networks, each a plain ``.h5`` weights file:

==========================  ==============  ==========================================================
file                        kind            network
==========================  ==============  ==========================================================
``synthseg_1.0.h5``         segmentation    one U-Net (``unet_*`` layers), 32 labels (no CSF)
``synthseg_2.0.h5``         segmentation    one U-Net, 33 labels (CSF, label 24, included)
``synthseg_robust_2.0.h5``  robust          cascade ``unet`` -> argmax/one-hot -> ``l2l`` (denoiser) ->
                                            argmax/one-hot, with the image -> ``unet2``, 33 labels
``synthseg_parc_2.0.h5``    parcellation    ``unet_parc`` on the image and a one-hot cortex mask,
                                            69 outputs (background + 68 Desikan-Killiany parcels)
``synthseg_qc_2.0.h5``      qc              ``qc`` residual encoder (ReLU, 5^3 kernels) on one-hot
                                            structure groups, 9 channels averaged -> 8 scores
==========================  ==============  ==========================================================

:func:`read_official` reads one such file (:mod:`.keras2_h5`: h5py only, arrays by layer name, the
stored architecture JSON is never read), infers the architecture from the weight names and shapes
(levels, convolutions per level, features of every level, kernel size, input channels, outputs,
skip connections: users' own SynthSeg trainings differ from the published 24-feature networks),
checks every weight (present, shape, finite), and builds the network in Keras 3 with the layer names
of neurite / FreeSurfer (``unet_conv_downarm_L_C``, ``unet_bn_down_L``, ``unet_conv_uparm_L_C``,
``unet_bn_up_L``, ``unet_likelihood``, ``unet_prediction``; the same with ``l2l``, ``unet2``,
``unet_parc``; ``qc_conv_downarm_L_C``, ``qc_expand_down_merge_L``, ``qc_final_conv_0/1``,
``qc_final_pred``).

The U-Net (neurite's ``unet`` as FreeSurfer's ``mri_synthseg`` builds it): encoder level ``L`` has
``C`` 'same' convolutions with ELU, then batch normalisation, then 2x2x2 max-pooling ('same');
decoder level ``j`` (``j = 0`` coarsest; its layers are numbered ``n_levels + j``) upsamples 2x
(nearest), concatenates ``[last encoder convolution of that level (before its normalisation),
upsampled]`` (the denoiser ``l2l`` skips this at its two finest levels), has ``C`` convolutions and
a batch normalisation (``unet_bn_up_j``); a 1x1x1 convolution gives the logits (``likelihood``) and a
softmax the posteriors (``prediction``). Output channels are in sorted label order
(``np.unique`` of the label list), as ``mri_synthseg`` uses them.

:func:`export_h5` writes one of our own ``.npz`` U-Nets in the official weights-only layout with
these names and the channels in sorted label order, so that ``mri_synthseg`` (which builds the
24-feature, 5-level, 2-convolution, 3^3-kernel ELU network and calls ``load_weights``) runs it.

Modules: :mod:`.tables` (label tables, QC structure groups), :mod:`.qc_input` (the QC network's
input geometry), :mod:`.architecture` (architecture inference, weight checks), :mod:`.building`
(the Keras 3 networks), :mod:`.files` (reading a file; exporting our own model). Every public name
is importable from this package.
"""

from ..keras2_h5 import OfficialModelError, is_keras2_h5
from .architecture import (
    KINDS,
    SEGMENTATION_KINDS,
    OfficialArchitecture,
    StageArchitecture,
    expected_weights,
    infer_architecture,
    mri_synthseg_incompatibility,
)
from .building import build_official_model
from .files import OfficialNetwork, export_h5, read_official
from .qc_input import QC_CROP_SIZE, qc_network_input
from .tables import DK_PARCELLATION_TABLE, QC_GROUP_NAMES, official_label_table, qc_group_of

__all__ = [
    "DK_PARCELLATION_TABLE",
    "KINDS",
    "QC_CROP_SIZE",
    "QC_GROUP_NAMES",
    "SEGMENTATION_KINDS",
    "OfficialArchitecture",
    "OfficialModelError",
    "OfficialNetwork",
    "StageArchitecture",
    "build_official_model",
    "expected_weights",
    "export_h5",
    "infer_architecture",
    "is_keras2_h5",
    "mri_synthseg_incompatibility",
    "official_label_table",
    "qc_group_of",
    "qc_network_input",
    "read_official",
]
