"""Both segmenters answer the calls of :class:`~synthseg_bids.inference.SegmenterProtocol`, with the same keywords."""

from __future__ import annotations

import inspect

from inference_fakes import voxel_network

from synthseg_bids.inference import InferenceSettings, Segmenter, SegmenterProtocol
from synthseg_bids.inference.official import OfficialSegmenter

CALLS = {"segment", "segment_ahead", "provenance", "describe", "model_summary"}
ATTRIBUTES = {"settings", "network", "label_table", "model_path", "model_info"}


def _members() -> set[str]:
    return {name for name in vars(SegmenterProtocol) if not name.startswith("_")}


def test_the_protocol_lists_the_calls_and_attributes_callers_use():
    assert _members() == CALLS | ATTRIBUTES


def test_both_segmenters_answer_every_call_with_the_same_keywords():
    ours = Segmenter(voxel_network(), InferenceSettings())
    assert isinstance(ours, SegmenterProtocol)
    for name in _members():
        assert hasattr(ours, name), name
        assert hasattr(OfficialSegmenter, name), name  # class attributes and properties (loading needs networks)
    for name in ("segment", "segment_ahead"):
        expected = list(inspect.signature(getattr(SegmenterProtocol, name)).parameters.items())
        for cls in (Segmenter, OfficialSegmenter):
            assert list(inspect.signature(getattr(cls, name)).parameters.items()) == expected, (cls, name)
