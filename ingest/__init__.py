"""Ingest: sources that yield records, the producer that puts them into the raw topic,
the run that accounts for every input, and the HTTP gateway."""

from ingest.feed import Feed, Summary
from ingest.producer import EventProducer, envelope
from ingest.sources import open_source, parse_uri, read_source, source_id

__all__ = ["EventProducer", "envelope", "open_source", "read_source", "parse_uri", "source_id", "Feed", "Summary"]
