"""The model choice (:mod:`synthseg_bids.inference.model_choice`), without Nipype.

References: the file names FreeSurfer 7.3's ``mri_synthseg`` reads from ``$FREESURFER_HOME/models``
(written out here, not taken from the package), :mod:`hashlib` for the sha256s, and TOML read by
:mod:`tomllib`.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path

import pytest

from synthseg_bids.core.settings import SettingsError
from synthseg_bids.inference.model_choice import ModelChoice, ModelFiles, ModelSelectionError
from synthseg_bids.network import ModelFileError

#: mri_synthseg's files in $FREESURFER_HOME/models (FreeSurfer 7.3.2's script).
FS_NAMES = {"2.0": "synthseg_2.0.h5", "1.0": "synthseg_1.0.h5", "robust": "synthseg_robust_2.0.h5",
            "parc": "synthseg_parc_2.0.h5", "qc": "synthseg_qc_2.0.h5"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_folder(tmp_path) -> Path:
    """A model folder whose networks are small files with distinct bytes (only names and hashes matter)."""
    folder = tmp_path / "models"
    folder.mkdir()
    for i, name in enumerate(FS_NAMES.values()):
        (folder / name).write_bytes(bytes([i]) * (i + 1))
    return folder


# -- validation: one message per combination that cannot be ------------------------------------


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"file": "m.npz", "folder": "models"}, "give either --model FILE or --model-dir DIR, not both"),
        ({"folder": "models", "v1": True, "robust": True},
         "--v1 cannot be used with --robust: SynthSeg-robust only exists in version 2.0 (drop --v1)"),
        ({"v1": True}, "--v1 select(s) SynthSeg's published networks in a model folder: add --model-dir DIR "
         "(e.g. --model-dir $FREESURFER_HOME/models)"),
        ({"file": "m.h5", "robust": True}, "--robust select(s) "),
        ({"parcellation": True}, "--parc select(s) "),
        ({"network_qc": True}, "--qc select(s) "),
        ({"v1": True, "parcellation": True, "network_qc": True}, "--v1, --parc, --qc select(s) "),
    ],
)
def test_combinations_that_cannot_be(fields, message):
    with pytest.raises(ModelSelectionError) as caught:
        ModelChoice(**fields)
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text


def test_types_are_checked():
    with pytest.raises(SettingsError, match="v1 must be true or false"):
        ModelChoice(folder="models", v1=1)
    with pytest.raises(SettingsError, match="unknown setting"):
        ModelChoice.from_dict({"parc": True})  # the one name is `parcellation`


def test_creating_one_touches_no_file(tmp_path):
    choice = ModelChoice(folder=tmp_path / "nowhere", robust=True, parcellation=True)
    assert choice.folder == tmp_path / "nowhere"  # missing files are found by files(), below


# -- files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "switches, expected",
    [
        ({}, ("2.0", None, None)),
        ({"v1": True}, ("1.0", None, None)),
        ({"robust": True, "network_qc": True}, ("robust", None, "qc")),
        ({"parcellation": True}, ("2.0", "parc", None)),
        # as mri_synthseg: no 1.0 parcellation/QC networks, the 2.0 ones run on the 1.0 segmentation
        ({"v1": True, "parcellation": True, "network_qc": True}, ("1.0", "parc", "qc")),
    ],
)
def test_folder_files_are_mri_synthsegs(fake_folder, switches, expected):
    files = ModelChoice(folder=fake_folder, **switches).files()
    wanted = tuple(None if key is None else fake_folder.resolve() / FS_NAMES[key] for key in expected)
    assert (files.segmentation, files.parcellation, files.qc) == wanted
    assert files.official
    assert list(files.by_role()) == ["segmentation"] + [r for r, k in zip(("parcellation", "qc"), expected[1:]) if k]


def test_folder_files_from_a_relative_folder_are_absolute(fake_folder, monkeypatch):
    monkeypatch.chdir(fake_folder.parent)
    files = ModelChoice(folder="models", parcellation=True).files()
    assert files.segmentation == fake_folder.resolve() / FS_NAMES["2.0"] and files.segmentation.is_absolute()


def test_missing_files_name_the_file(tmp_path, fake_folder):
    with pytest.raises(ModelFileError, match="model folder not found") as caught:
        ModelChoice(folder=tmp_path / "nowhere").files()
    assert caught.value.path == tmp_path / "nowhere"
    (fake_folder / FS_NAMES["parc"]).unlink()
    with pytest.raises(ModelFileError) as caught:
        ModelChoice(folder=fake_folder, parcellation=True).files()
    assert str(caught.value) == (f"{fake_folder / FS_NAMES['parc']}: not found: the parcellation network "
                                 f"{FS_NAMES['parc']} is not in {fake_folder}")
    ModelChoice(folder=fake_folder).files()  # the parcellation network is not needed without it
    with pytest.raises(ModelFileError) as caught:
        ModelChoice(file=tmp_path / "nope.npz").files()
    assert str(caught.value) == f"{tmp_path / 'nope.npz'}: model file not found"


def test_model_files_and_the_shipped_model(tmp_path, monkeypatch):
    h5, npz = tmp_path / "net.h5", tmp_path / "mine.npz"
    h5.write_bytes(b"x")
    npz.write_bytes(b"x")
    assert ModelChoice(file=h5).files() == ModelFiles(h5.resolve(), official=True)
    assert ModelChoice(file=npz).files() == ModelFiles(npz.resolve(), official=False)
    import synthseg_bids.inference.runtime as segmenter

    monkeypatch.setattr(segmenter, "default_model_path", lambda: npz)
    assert ModelChoice().files() == ModelFiles(npz.resolve())
    assert ModelChoice().resolved() == ModelChoice(file=npz.resolve())
    monkeypatch.setattr(segmenter, "default_model_path", lambda: tmp_path / "absent.npz")
    with pytest.raises(ModelFileError, match="the default model is not installed with this package; give a model "
                       r"file \(--model\)"):
        ModelChoice().files()


def test_resolved_makes_paths_absolute(fake_folder, monkeypatch):
    monkeypatch.chdir(fake_folder)
    choice = ModelChoice(folder=".", robust=True).resolved()
    assert choice == ModelChoice(folder=fake_folder.resolve(), robust=True)
    assert ModelChoice(file=FS_NAMES["1.0"]).resolved() == ModelChoice(file=fake_folder.resolve() / FS_NAMES["1.0"])


# -- identity -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_folder(tmp_path_factory) -> Path:
    """A model folder whose synthseg_2.0.h5 is a real (tiny, random) 33-label network in SynthSeg's layout."""
    from synthseg_bids.core.labels import default_label_table
    from synthseg_bids.network import ModelInfo, NetworkSettings, build_unet, save_model
    from synthseg_bids.network.official import export_h5

    root = tmp_path_factory.mktemp("exported")
    settings = NetworkSettings(base_features=4, n_levels=2)
    info = ModelInfo(network=settings, label_table=default_label_table(), resolution_mm=1.0)
    npz = save_model(root / "tiny.npz", build_unet(settings, 33, seed=0), info)
    folder = root / "models"
    folder.mkdir()
    export_h5(npz, folder / FS_NAMES["2.0"])
    (folder / FS_NAMES["parc"]).write_bytes(b"parcellation")
    (folder / FS_NAMES["qc"]).write_bytes(b"qc")
    return folder


def test_identity_of_one_file_is_its_sha256(tiny_model, exported_folder):
    from synthseg_bids.core.labels import default_label_table

    ours = ModelChoice(file=tiny_model).identity()
    assert ours.sha256 == _sha256(tiny_model)
    assert ours.files == (("segmentation", tiny_model.resolve(), _sha256(tiny_model)),)
    assert ours.label_table.values.tolist() == default_label_table().values.tolist()
    h5 = exported_folder / FS_NAMES["2.0"]
    for choice in (ModelChoice(file=h5), ModelChoice(folder=exported_folder)):
        identity = choice.identity()
        assert identity.sha256 == _sha256(h5)
        # SynthSeg 2.0's channels are in sorted label order
        assert identity.label_table.values.tolist() == sorted(default_label_table().values.tolist())


def test_identity_of_several_files_hashes_their_names_and_sha256s(exported_folder):
    names = [FS_NAMES["2.0"], FS_NAMES["parc"], FS_NAMES["qc"]]
    lines = "".join(f"{name} {_sha256(exported_folder / name)}\n" for name in names)
    identity = ModelChoice(folder=exported_folder, parcellation=True, network_qc=True).identity()
    assert identity.sha256 == hashlib.sha256(lines.encode()).hexdigest()
    assert [(role, path.name) for role, path, _ in identity.files] == list(zip(("segmentation", "parcellation", "qc"),
                                                                             names))
    parcellation_only = ModelChoice(folder=exported_folder, parcellation=True).identity().sha256
    assert len({identity.sha256, parcellation_only, _sha256(exported_folder / names[0])}) == 3


# -- serialisation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("choice", [
    ModelChoice(),
    ModelChoice(file=Path("/models/mine.npz")),
    ModelChoice(folder=Path("/opt/freesurfer/models"), v1=True, parcellation=True, network_qc=True),
])
def test_round_trips(tmp_path, choice):
    assert ModelChoice.from_dict(choice.to_dict()) == choice
    assert ModelChoice.from_json(choice.to_json()) == choice
    path = choice.save(tmp_path / "model.toml")
    written = tomllib.loads(path.read_text())
    assert written == {k: v for k, v in choice.to_dict().items() if v is not None}
    assert ModelChoice.from_file(path) == choice


def test_to_dict_is_plain_and_names_the_fields_once():
    data = ModelChoice(folder=Path("/fs/models"), robust=True).to_dict()
    assert data == {"file": None, "folder": os.fspath(Path("/fs/models")), "v1": False, "robust": True,
                    "parcellation": False, "network_qc": False}
