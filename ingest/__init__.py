"""Ingest: sources that yield records, and the producer that puts them into the raw topic."""

from ingest.producer import EventProducer, envelope
from ingest.sources import open_source, source_id

__all__ = ["EventProducer", "envelope", "open_source", "source_id"]
