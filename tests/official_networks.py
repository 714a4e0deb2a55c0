"""Small SynthSeg-layout ``.h5`` networks built by FreeSurfer's own Keras 2 code, for pipeline tests.

FreeSurfer 7.3.2's ``mri_synthseg`` (loaded by :mod:`freesurfer_oracle`) builds each network with
neurite's ``unet`` / ``conv_enc``; here the same functions build narrower, shallower versions
(the readers infer the architecture from the weights), with seeded random weights, written with
Keras 2's ``save_weights`` under the file names of ``$FREESURFER_HOME/models``. The cascades and
the QC regressor are assembled as ``build_model`` assembles them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from freesurfer_oracle import load_oracle, randomise_weights

#: Output channels of the published networks.
N_LABELS = {"2.0": 33, "1.0": 32, "parcellation": 69, "qc": 9, "denoiser": 5}


def _unet(fs, name, *, channels=1, labels=33, features=8, levels=3, conv=3, skip_n=0, input_model=None):
    return fs.unet(nb_features=features, input_shape=[None, None, None, channels], nb_levels=levels, conv_size=conv,
                   nb_labels=labels, feat_mult=2, activation="elu", nb_conv_per_level=2, batch_norm=-1,
                   skip_n_concatenations=skip_n, input_model=input_model, name=name)


def _argmax_one_hot(fs, tensor, depth):
    tf = fs.tf
    tensor = fs.KL.Lambda(lambda x: tf.argmax(x, axis=-1))(tensor)
    return fs.KL.Lambda(lambda x: tf.one_hot(tf.cast(x, "int32"), depth=depth, axis=-1))(tensor)


def robust_net(fs, features=8, levels=3):
    """unet -> argmax/one-hot -> l2l (5^3 kernels, no skips at the two finest levels) ->
    argmax/one-hot, with the image -> unet2, as ``build_model(robust=True)``."""
    groups = N_LABELS["denoiser"]
    net = _unet(fs, "unet", labels=groups, features=features, levels=levels)
    net = fs.keras.Model(net.inputs, _argmax_one_hot(fs, net.output, groups))
    net = _unet(fs, "l2l", labels=groups, features=features, levels=levels, conv=5, skip_n=2, input_model=net)
    image = net.inputs[0]
    tensor = _argmax_one_hot(fs, net.output, groups)
    tensor = fs.KL.Lambda(lambda x: fs.tf.cast(fs.tf.concat(x, axis=-1), "float32"))([image, tensor])
    net = fs.keras.Model(net.inputs, tensor)
    return _unet(fs, "unet2", channels=2, labels=N_LABELS["2.0"], features=features, levels=levels, input_model=net)


def qc_net(fs, features=8, levels=2):
    """The QC regressor of ``build_model(do_qc=True)`` on one-hot QC groups (9 channels)."""
    n = N_LABELS["qc"]
    net = fs.conv_enc(nb_features=features, input_shape=[None, None, None, n], nb_levels=levels, conv_size=5,
                      name="qc", feat_mult=2, activation="relu", use_residuals=True, nb_conv_per_level=2,
                      batch_norm=-1)
    kw = {"padding": "same", "activation": "relu", "data_format": "channels_last"}
    tensor = fs.KL.MaxPool3D(pool_size=(2, 2, 2), name=f"qc_maxpool_{levels - 1}", padding="same")(net.outputs[0])
    tensor = fs.KL.Conv3D(n, kernel_size=5, **kw, name="qc_final_conv_0")(tensor)
    tensor = fs.KL.Conv3D(n, kernel_size=5, **kw, name="qc_final_conv_1")(tensor)
    tensor = fs.KL.Lambda(lambda x: fs.tf.reduce_mean(x, axis=[1, 2, 3]), name="qc_final_pred")(tensor)
    return fs.keras.Model(net.inputs, tensor)


def build_networks(fs=None, *, seed: int = 0) -> dict:
    """The five small Keras 2 networks by role ('1.0', '2.0', 'robust', 'parcellation', 'qc')."""
    fs = fs or load_oracle()
    rng = np.random.default_rng(seed)
    nets = {
        "2.0": _unet(fs, "unet", labels=N_LABELS["2.0"]),
        "1.0": _unet(fs, "unet", labels=N_LABELS["1.0"]),
        "robust": robust_net(fs),
        "parcellation": _unet(fs, "unet_parc", channels=3, labels=N_LABELS["parcellation"]),
        "qc": qc_net(fs),
    }
    for net in nets.values():
        randomise_weights(net, rng)
    return nets


def write_model_dir(folder: Path, nets: dict) -> Path:
    """Write ``nets`` (from :func:`build_networks`) as ``$FREESURFER_HOME/models`` does name them."""
    from synthseg_bids.inference.model_choice import MODEL_FILES

    folder.mkdir(parents=True, exist_ok=True)
    for role, net in nets.items():
        net.save_weights(folder / MODEL_FILES[role])
    return folder


def fs_label_list(table) -> tuple[np.ndarray, int]:
    """A label list laid out as ``mri_synthseg``'s (unpaired labels first, then the left and the
    right structures in the same order) and its number of unpaired labels, for ``get_flip_indices``."""
    neutral = [s.value for s in table if s.mirror == s.value]
    left = [s.value for s in table if s.hemisphere == "left"]
    right = [next(t.mirror for t in table if t.value == v) for v in left]
    return np.array(neutral + left + right), len(neutral)


def freesurfer_predict(fs, image: Path, model: Path, out: Path, *, fast: bool, features: int = 24) -> dict:
    """Run FreeSurfer's ``predict()`` (the whole ``mri_synthseg`` 2.0 pipeline) on ``image`` with the
    segmentation network ``model``; returns the paths of the label map and the volumes CSV.

    ``mri_synthseg`` builds a 24-feature U-Net; ``features`` changes that number (through its
    ``unet`` function) so that it can run networks of another width, e.g. our exported model.
    """
    from synthseg_bids.core.labels import default_label_table

    table = default_label_table()
    labels, n_neutral = fs_label_list(table)
    by_value = {s.value: s for s in table}
    original = fs.unet

    def unet(nb_features, *args, **kwargs):
        return original(features if kwargs.get("name") == "unet" else nb_features, *args, **kwargs)

    out.mkdir(parents=True, exist_ok=True)
    seg, volumes = out / "freesurfer_seg.nii.gz", out / "freesurfer_volumes.csv"
    fs.unet = unet
    try:
        fs.predict(
            path_images=str(image), path_segmentations=str(seg), path_model_segmentation=str(model),
            labels_segmentation=labels, robust=False, fast=fast, v1=False, n_neutral_labels=n_neutral,
            names_segmentation=np.array([by_value[v].name for v in labels]), labels_denoiser=np.arange(5),
            path_posteriors=None, path_resampled=None, path_volumes=str(volumes), do_parcellation=False,
            path_model_parcellation=None, labels_parcellation=None, names_parcellation=None, path_qc_scores=None,
            path_model_qc=None, labels_qc=None, names_qc=None, cropping=None,
            topology_classes=np.array([by_value[v].group for v in labels]),
        )
    finally:
        fs.unet = original
    return {"labels": seg, "volumes": volumes}
