"""The dataset registry: every lab's default dataset is listed, an ImportError of a dataset module is not hidden,
and the tables shipped in pip packages (seattle-weather, diabetes) have entries."""

from __future__ import annotations

import sys

import pytest

from deepnotes.cli import main
from deepnotes.data.registry import all_datasets, get_dataset
from deepnotes.data.tabular import DIABETES, SEATTLE_WEATHER, PackagedDataset
from deepnotes.errors import DataError, UserError
from deepnotes.experiment import all_labs


def test_every_labs_default_dataset_is_listed():
    names = set(all_datasets())
    missing = {lab.name: lab.default_dataset for lab in all_labs() if lab.default_dataset not in names}
    assert not missing, f"labs whose default_dataset `deepnotes data list` does not show: {missing}"


@pytest.mark.parametrize("module", ["deepnotes.data.translation", "deepnotes.data.phonemes", "deepnotes.data.tabular"])
def test_an_import_error_of_a_dataset_module_surfaces(monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError, as a broken module would
    with pytest.raises(ImportError):
        all_datasets()


def test_packaged_tables_are_present_and_say_where(capsys):
    for entry, file in ((SEATTLE_WEATHER, "seattle-weather.csv"), (DIABETES, "diabetes_data_raw.csv.gz")):
        assert get_dataset(entry.name) is entry
        assert entry.status() == f"present at {entry.build()}" and entry.build().name == file and entry.build().is_file()
        assert f"pip install {entry.pip}" in entry.how_to_get()
    assert main(["data", "list"]) == 0
    listed = capsys.readouterr().out
    assert "seattle-weather " in listed and "diabetes " in listed
    assert main(["data", "info", "diabetes"]) == 0
    assert "Least Angle Regression" in capsys.readouterr().out


def test_a_packaged_table_whose_package_or_file_is_missing():
    for module, file in (("deepnotes_no_such_package", "x.csv"), ("deepnotes", "no/such/file.csv")):
        entry = PackagedDataset("toy", "a toy table", "no-such-pip", module, file, "nowhere")
        assert entry.locate() is None and entry.status() == "missing (pip install no-such-pip)"
        with pytest.raises(DataError, match="pip install no-such-pip"):
            entry.build()


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(UserError, match="seattle-weather"):
        get_dataset("nope")


def test_fortunes_entry_names_the_packages_when_missing(tmp_path):
    from deepnotes.data.bert_tasks import TOPICS, FortunesDataset

    entry = FortunesDataset(root=tmp_path)
    assert entry.status().startswith("missing") and "fortunes-min" in entry.status()
    with pytest.raises(DataError, match="missing computers, science.*apt-get install fortunes fortunes-min"):
        entry.build()
    for name in TOPICS:
        (tmp_path / name).write_text("a fortune\n%\n")
    assert entry.build() == tmp_path and entry.status() == f"present at {tmp_path}"


def test_toy_mixture_entries_build_their_constants(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path))
    ring = get_dataset("ring")
    path = ring.build()
    saved = json.loads(path.read_text())
    assert path.parent.parent == tmp_path and len(saved["means"]) == 8 and saved["std"] == ring.std
