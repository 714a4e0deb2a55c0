"""The FreeSurfer oracle's availability rule: skip where it cannot run, fail where CI requires it."""

from __future__ import annotations

import sys

import pytest

import freesurfer_oracle


@pytest.fixture
def oracle_missing(monkeypatch):
    """As if tf-keras were not installed (and the oracle not loaded yet)."""
    monkeypatch.delitem(sys.modules, freesurfer_oracle._MODULE_NAME, raising=False)
    monkeypatch.setattr(freesurfer_oracle, "missing_reason", lambda: "FreeSurfer oracle needs tf_keras")


def test_skips_when_the_oracle_cannot_run(oracle_missing, monkeypatch):
    monkeypatch.delenv("SYNTHSEG_REQUIRE_ORACLE", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs tf_keras"):
        freesurfer_oracle.load_oracle()


def test_fails_when_ci_requires_the_oracle(oracle_missing, monkeypatch):
    monkeypatch.setenv("SYNTHSEG_REQUIRE_ORACLE", "1")
    with pytest.raises(pytest.fail.Exception, match="SYNTHSEG_REQUIRE_ORACLE=1 but FreeSurfer oracle needs tf_keras"):
        freesurfer_oracle.load_oracle()
    with pytest.raises(pytest.fail.Exception, match="mri_synthseg script not installed"):
        freesurfer_oracle.skip_or_fail("mri_synthseg script not installed")
