"""The worker's RocksDB memory per table partition: bounded by default, sized by the environment."""

from __future__ import annotations

import pytest

from processors.app import ROCKSDB_OPTIONS, rocksdb_options


def test_defaults_bound_each_database_well_below_fausts():
    got = rocksdb_options({})
    assert got == ROCKSDB_OPTIONS
    assert got["write_buffer_size"] * got["max_write_buffer_number"] + got["block_cache_size"] == 32 << 20


def test_the_environment_sets_the_memtable_and_cache_sizes_in_mib():
    got = rocksdb_options({"DRIFTLINE_ROCKSDB_MEMTABLE_MIB": "32", "DRIFTLINE_ROCKSDB_CACHE_MIB": "256"})
    assert (got["write_buffer_size"], got["block_cache_size"]) == (32 << 20, 256 << 20)
    assert got["max_write_buffer_number"] == ROCKSDB_OPTIONS["max_write_buffer_number"]


@pytest.mark.parametrize("raw", ["0", "-4", "8MB", "1.5", ""])
def test_a_bad_size_stops_the_worker_at_start_naming_the_variable_and_the_fix(raw):
    with pytest.raises(SystemExit) as exc:
        rocksdb_options({"DRIFTLINE_ROCKSDB_CACHE_MIB": raw})
    assert "DRIFTLINE_ROCKSDB_CACHE_MIB" in str(exc.value) and "whole number of MiB" in str(exc.value)
