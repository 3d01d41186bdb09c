"""Carrying out the storage effects that answer with a completion, against any engine: one
place both drivers (the asyncio runtime and the simulator) call, so the two can never drift
in what an effect does to the disk or what it reports back.

Owns: effect -> engine call -> completion, and the completion a failed call reports (a
storage failure answers that one operation, never the node). Which thread or which virtual
moment an effect runs at is the driver's business, not this module's.
"""

from __future__ import annotations

from agora.core.effects import (BatchlogDone, BatchlogLoad, BatchlogStore, HintIndex,
                                HintIndexDone, HintPut, HintPutDone, HintScan, HintScanDone,
                                StorageGet, StorageGetDone, StorageReplace, StorageReplaceDone,
                                StorageScan, StorageScanDone, StorageWalkClean)


# Pieces a scan's byte bound is read in: the scan stops before a piece that would take it
# past the bound, and that piece was read for nothing, so pieces of an eighth of the bound
# waste at most an eighth of a scan's reading.
PIECES_PER_BYTE_BOUND = 8


def complete(engine, eff):
    """Run `eff` against `engine` and return its completion; raises what the engine raises."""
    if isinstance(eff, StorageGet):
        if eff.command.limit_rows:
            page = engine.read_page(eff.command, eff.max_bytes)
            return StorageGetDone(eff.op_id, page.partition, None, page.more_after)
        return StorageGetDone(eff.op_id, engine.read(eff.command))
    if isinstance(eff, StorageScan):
        if eff.walk_start and engine.begin_walk(eff.table_id):
            return StorageScanDone(eff.op_id, (), True, skipped=True)
        piece_bytes = max(1, eff.max_bytes // PIECES_PER_BYTE_BOUND) if eff.max_bytes else 0
        return eff.collect(engine.scan_pieces(eff.table_id, *eff.token_range(), eff.resume(),
                                              eff.max_rows, piece_bytes, eff.truncated_at))
    if isinstance(eff, StorageReplace):
        return StorageReplaceDone(eff.op_id, engine.replace(eff.pairs, eff.sync, eff.truncated_at,
                                                                 eff.all_truncated))
    if isinstance(eff, BatchlogStore):
        engine.batchlog_put(eff.batch_id, eff.entry, eff.sync)
        return BatchlogDone(eff.op_id)
    if isinstance(eff, HintPut):
        engine.put_hints(eff.hints, eff.sync)
        return HintPutDone(eff.op_id)
    if isinstance(eff, HintScan):
        return eff.collect(engine.hints_after(eff.prefix, eff.after))
    if isinstance(eff, BatchlogLoad):
        return BatchlogDone(eff.op_id, tuple(engine.batchlog_items()))
    if isinstance(eff, HintIndex):
        return eff.collect(engine.hint_sizes())
    raise AssertionError(f"not a storage effect with a completion: {eff!r}")


def run_walk_clean(engine, eff: StorageWalkClean) -> None:
    """Carry out a `StorageWalkClean` (it has no completion)."""
    engine.end_walk(eff.table_id)


def failed(eff, exc: BaseException):
    """The completion that reports `exc` for `eff`."""
    error = f"storage error: {exc}"
    if isinstance(eff, StorageGet):
        return StorageGetDone(eff.op_id, None, error)
    if isinstance(eff, StorageScan):
        return StorageScanDone(eff.op_id, (), True, error)
    if isinstance(eff, StorageReplace):
        return StorageReplaceDone(eff.op_id, 0, error)
    if isinstance(eff, HintPut):
        return HintPutDone(eff.op_id, error)
    if isinstance(eff, HintScan):
        return HintScanDone(eff.op_id, (), True, error)
    if isinstance(eff, (BatchlogStore, BatchlogLoad)):
        return BatchlogDone(eff.op_id, (), error)
    assert isinstance(eff, HintIndex), f"not a storage effect with a completion: {eff!r}"
    return HintIndexDone(eff.op_id, (), error)
