"""Galleries you can search: the track index (format 3: tracks of camera recordings, `TrackIndex`), reading
either it or an image index (format 1, occreid.evaluation.GalleryIndex) with `load_index`, ingesting
recordings (`open_recording`, `ingest`), and searching by track or by image with the CLI's JSON answer."""

from occreid.retrieval.ingest import (
    GallerySettings,
    IngestReport,
    Recording,
    ingest,
    open_recording,
    sample_crops,
)
from occreid.retrieval.meta import index_settings
from occreid.retrieval.search import load_index, nearest, search_by_image, search_by_track
from occreid.retrieval.track_index import INDEX_VERSION, TrackIndex, UnknownTrackError, pool

__all__ = [
    "INDEX_VERSION",
    "GallerySettings",
    "IngestReport",
    "Recording",
    "TrackIndex",
    "UnknownTrackError",
    "index_settings",
    "ingest",
    "load_index",
    "nearest",
    "open_recording",
    "pool",
    "sample_crops",
    "search_by_image",
    "search_by_track",
]
