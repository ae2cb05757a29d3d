import io
import re
from collections import Counter
from pathlib import PurePath

from PIL import Image

from bootstrap.sample.fruit_images import LABELS
from bootstrap.sample.sample_data import fruits360_files, main, synthetic_files
from spark.layout import Layout, label_of
from spark.settings import PROBE_FRAME_NUMBERS
from spark.storage import list_keys


def test_synthetic_sample_mixes_sizes_labels_and_two_broken_files() -> None:
    dates = ["2026-03-02", "2026-03-01"]
    files = list(synthetic_files(dates, per_date=20, phone_per_date=2, seed=1))
    assert Counter(f.date for f in files) == {"2026-03-01": 24, "2026-03-02": 22}
    assert {f.label for f in files} >= set(LABELS[:8])
    broken = [f for f in files if not f.decodable]
    assert [f.date for f in broken] == ["2026-03-01", "2026-03-01"]
    sizes = Counter(Image.open(io.BytesIO(f.body)).size for f in files if f.decodable)
    assert sizes == {(100, 100): 40, (1280, 960): 4}


def test_each_synthetic_photo_is_an_object_of_its_own_for_the_probe() -> None:
    """feature_quality's probe groups a label's files by their stem less trailing frame
    numbers: each render is a separate object, so no two may fall in one group, across
    dates too (a group is held out whole: the demo's split would collapse otherwise)."""
    dates = ["2026-03-01", "2026-03-02"]
    files = list(synthetic_files(dates, per_date=24, phone_per_date=2, seed=1))
    photos = [f for f in files if f.decodable]
    groups = {(f.label, re.sub(PROBE_FRAME_NUMBERS, "", PurePath(f.name).stem)) for f in photos}
    assert len(groups) == len(photos) == 52


def test_the_same_seed_gives_the_same_sample() -> None:
    first = [f.body for f in synthetic_files(["2026-03-01"], 5, 1, seed=4)]
    second = [f.body for f in synthetic_files(["2026-03-01"], 5, 1, seed=4)]
    assert first == second


def test_fruits360_folders_become_labels(tmp_path) -> None:
    for label in ("Apple Braeburn", "Kiwi"):
        (tmp_path / label).mkdir()
        for n in range(3):
            Image.new("RGB", (100, 100), (n * 50, 100, 0)).save(tmp_path / label / f"{n}_100.jpg")
    (tmp_path / "Kiwi" / "notes.txt").write_text("not an image")
    files = list(fruits360_files(tmp_path, "2026-03-05", limit_per_label=2))
    assert [(f.label, f.name) for f in files] == [
        ("Apple Braeburn", "0_100.jpg"),
        ("Apple Braeburn", "1_100.jpg"),
        ("Kiwi", "0_100.jpg"),
        ("Kiwi", "1_100.jpg"),
    ]


def test_cli_uploads_into_the_raw_layout(tmp_path, s3, settings, monkeypatch) -> None:
    monkeypatch.setenv("FRUITS_PREFIX", "cli-test")
    (tmp_path / "Banana").mkdir()
    Image.new("RGB", (100, 100), "yellow").save(tmp_path / "Banana" / "b_1.jpg")
    assert main(["import-fruits360", str(tmp_path), "--upload-date", "2026-03-06"]) == 0
    generate = ["generate", "--dates", "2026-03-07", "--per-date", "3", "--phone-per-date", "0"]
    assert main(generate) == 0
    layout = Layout(settings.bucket, "cli-test")
    keys = list_keys(s3, settings.bucket, layout.raw_prefix())
    assert layout.raw_image_key("2026-03-06", "Banana", "b_1.jpg") in keys
    assert Counter(k.split("/")[2] for k in keys) == {
        "upload_date=2026-03-06": 1,
        "upload_date=2026-03-07": 5,  # 3 photos + the 2 deliberately broken files
    }
    assert all(label_of(k) != "unlabelled" for k in keys)
    head = s3.head_object(Bucket=settings.bucket, Key=keys[0])
    assert head["ServerSideEncryption"] == "AES256"
