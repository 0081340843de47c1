"""lrmsafety.store: a folder per configuration, parts appended atomically, a manifest that guards the hash."""

import json

import numpy as np
import pandas as pd
import pytest

from lrmsafety import store


def test_a_store_keeps_the_first_copy_of_a_key_and_reports_what_is_pending(tmp_path):
    table = store.TableStore(tmp_path, "rollouts", {"k": 1}, key=["prompt_id", "sample_index"])
    table.append(pd.DataFrame({"prompt_id": ["a", "b"], "sample_index": [0, 0], "text": ["first", "x"]}))
    table.append(pd.DataFrame({"prompt_id": ["a"], "sample_index": [0], "text": ["second"]}))
    read = table.read()
    assert read.set_index("prompt_id").loc["a", "text"] == "first" and len(read) == 2
    assert table.pending([("a", 0), ("b", 1)]) == [("b", 1)]
    assert [p.name for p in table.parts] == ["part-000000.parquet", "part-000001.parquet"]


def test_another_configuration_gets_another_folder_and_a_tampered_manifest_is_refused(tmp_path):
    first = store.TableStore(tmp_path, "rollouts", {"k": 1}, key=["id"])
    second = store.TableStore(tmp_path, "rollouts", {"k": 2}, key=["id"])
    assert first.dir != second.dir and first.hash == store.config_hash({"k": 1})
    manifest = first.dir / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "config": {"k": 3}}))
    with pytest.raises(RuntimeError, match="another configuration"):
        store.TableStore(tmp_path, "rollouts", {"k": 1}, key=["id"])


def test_rows_without_the_key_columns_are_refused(tmp_path):
    table = store.TableStore(tmp_path, "t", {}, key=["prompt_id"])
    with pytest.raises(ValueError, match="key columns"):
        table.append(pd.DataFrame({"text": ["x"]}))


def test_tensors_round_trip(tmp_path):
    path = store.save_tensors(tmp_path / "states.safetensors", {"h": np.arange(6, dtype=np.float32).reshape(2, 3)},
                              metadata={"layer": 4})
    assert np.array_equal(store.load_tensors(path)["h"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert not list(tmp_path.glob("*.tmp"))


def test_hashes_do_not_depend_on_key_order():
    assert store.config_hash({"a": 1, "b": [1, 2]}) == store.config_hash({"b": [1, 2], "a": 1})
    assert store.text_hash(None) == store.text_hash("")


def _hold(directory, started, seconds):
    table = store.TableStore(directory, "rollouts", {"k": 1}, key=["id"])
    with table.writing():
        started.set()
        import time

        time.sleep(seconds)
        (table.dir / "first-writer-done").write_text("")


def test_a_second_writer_waits_for_the_first(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    started = context.Event()
    other = context.Process(target=_hold, args=(tmp_path, started, 1.0))
    other.start()
    assert started.wait(60)
    table = store.TableStore(tmp_path, "rollouts", {"k": 1}, key=["id"])
    with table.writing():
        assert (table.dir / "first-writer-done").exists()
    other.join(30)


def test_a_corrupt_part_names_the_file_and_the_fix(tmp_path):
    table = store.TableStore(tmp_path, "rollouts", {"k": 1}, key=["id"])
    table.append(pd.DataFrame({"id": [1]}))
    table.parts[0].write_bytes(b"not parquet")
    with pytest.raises(RuntimeError, match=r"part-000000.parquet cannot be read .*delete that file"):
        table.read()


def _write_manifests(path, rounds):
    for i in range(rounds):
        store._atomic_write_text(path, f"{i}")


def test_processes_side_by_side_write_one_file(tmp_path):
    """Data parallel workers may create a store's manifest at once: each write and rename is the process's own, so
    none fails (with one shared temporary name, one's rename took the other's file away) and no temporary is left."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    path = tmp_path / "manifest.json"
    workers = [context.Process(target=_write_manifests, args=(path, 300)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert path.read_text() == "299" and not list(tmp_path.glob("*.tmp"))
