"""Reading and writing contract tables, and publishing a folder all at once or not at all."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.data.contract import conform, videos_schema
from pipelines.data.io import (
    DataFileError,
    file_shape,
    find_table,
    publish_folder,
    read_table,
    repeated_columns,
    write_table,
)


@pytest.fixture
def videos() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "video_id": ["v1", "v2"],
            "tags": [["drama", "crime"], []],
            "duration_s": [60.0, 90.5],
            "published_at": pd.to_datetime(["2026-01-01 10:00", "2026-01-02 00:00"], utc=True),
        }
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".csv.gz"])
def test_round_trip_through_each_format(tmp_path, videos, suffix):
    path = write_table(videos, tmp_path / f"videos{suffix}")
    back = conform(read_table(path), videos_schema({"tags": "multi"})).frame
    pd.testing.assert_frame_equal(back, videos, check_dtype=False)
    assert find_table(tmp_path, "videos") == path


def test_missing_unknown_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(DataFileError, match="events.parquet: no such file"):
        read_table(tmp_path / "events.parquet")
    (tmp_path / "events.json").write_text("{}")
    with pytest.raises(DataFileError, match="events.json: unknown file type"):
        read_table(tmp_path / "events.json")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataFileError, match="broken.parquet: cannot be read"):
        read_table(tmp_path / "broken.parquet")
    with pytest.raises(DataFileError, match="no such file .*table 'users'"):
        find_table(tmp_path, "users")


def test_publish_folder_swaps_in_whole(tmp_path, videos):
    target = tmp_path / "validated"
    with publish_folder(target) as scratch:
        write_table(videos, scratch / "videos.parquet")
    first = target.resolve()
    assert (target / "videos.parquet").exists()
    with publish_folder(target) as scratch:
        write_table(videos.head(1), scratch / "videos.parquet")
    assert len(read_table(target / "videos.parquet")) == 1
    assert not first.exists()  # the old version is cleaned up
    assert len([p for p in tmp_path.iterdir() if p.name.startswith(".")]) == 1


def test_publish_folder_leaves_the_old_folder_on_error(tmp_path, videos):
    target = tmp_path / "validated"
    with publish_folder(target) as scratch:
        write_table(videos, scratch / "videos.parquet")
    with pytest.raises(RuntimeError), publish_folder(target) as scratch:
        write_table(videos.head(1), scratch / "videos.parquet")
        raise RuntimeError("crash half-way")
    assert len(read_table(target / "videos.parquet")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [target.name, target.resolve().name]
    )


def test_a_column_named_twice_in_a_csv_header_is_found(tmp_path):
    path = tmp_path / "videos.csv.gz"
    pd.DataFrame([[1, 2, 3, 4]], columns=["a", "b", "a", "a"]).to_csv(path, index=False)
    assert list(read_table(path).columns) == ["a", "b", "a.1", "a.2"]  # what pandas makes of it
    assert repeated_columns(path) == {"a": 3}
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "ok.parquet")
    assert repeated_columns(tmp_path / "ok.parquet") == {}


def test_write_table_writes_list_columns_to_csv_the_way_they_are_read(tmp_path, videos):
    parquet = write_table(videos, tmp_path / "videos.parquet")
    from_parquet = read_table(parquet)  # lists come back as NumPy arrays
    assert type(from_parquet["tags"][0]).__name__ == "ndarray"
    path = write_table(from_parquet, tmp_path / "videos.csv")
    text = path.read_text()
    assert "drama|crime" in text and "[" not in text
    back = conform(read_table(path), videos_schema({"tags": "multi"}))
    assert back.unparseable["tags"].empty
    pd.testing.assert_frame_equal(back.frame, videos, check_dtype=False)


def test_file_shape_finds_what_is_not_a_table(tmp_path):
    empty = tmp_path / "events.parquet"
    empty.mkdir()
    assert file_shape(empty).empty_directory and not file_shape(empty).holds_table
    (tmp_path / "parts").mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "parts" / "part-0.parquet")
    assert file_shape(tmp_path / "parts").holds_table  # a folder of Parquet parts reads
    semicolons = tmp_path / "events.csv"
    semicolons.write_text("user_id;video_id;ts\nu1;v1,v2;2026-01-01\n")
    shape = file_shape(semicolons)
    assert (shape.header, shape.delimiter, shape.holds_table) == (
        ("user_id;video_id;ts",),
        ";",
        False,
    )
    assert shape.first_row == ("u1;v1", "v2;2026-01-01")  # a comma in a value: no parser error
    nul = tmp_path / "users.csv"
    nul.write_bytes(b"user_id\nu1\nu\x002\n")
    assert file_shape(nul).nul_line == (3, "u\x002") and file_shape(nul).holds_table
    assert file_shape(tmp_path / "events.parquet").nul_line is None
