"""Tests for deepnotes.report.markdown."""

from pathlib import PurePosixPath

import numpy as np
import pytest

from deepnotes.report import format_number, markdown_image, markdown_table


@pytest.mark.parametrize(
    "value, text",
    [
        (0.123456, "0.1235"),
        (0.97812, "0.9781"),
        (2.0, "2"),
        (1e-05, "1e-05"),
        (12345.6, "12346"),
        (3, "3"),
        (np.float32(0.5), "0.5"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
        (None, ""),
        (True, "True"),
        ("resnet-18", "resnet-18"),
    ],
)
def test_format_number(value, text):
    assert format_number(value) == text


def test_markdown_table_layout():
    table = markdown_table(["model", "acc"], [["mlp", 0.97812], ["cnn", 0.99125]])
    assert table == (
        "| model |    acc |\n"
        "| :---- | -----: |\n"
        "| mlp   | 0.9781 |\n"
        "| cnn   | 0.9912 |\n"
    )


def test_markdown_table_escapes_and_none():
    table = markdown_table(["name", "x"], [["a|b\nc", None], ["d", 1]])
    lines = table.splitlines()
    assert lines[2].startswith("| a\\|b c |")
    assert lines[1].endswith("--: |")  # numeric column (None cells ignored) right-aligned
    assert all(line.count(" | ") == 1 for line in lines)


def test_markdown_table_errors():
    with pytest.raises(ValueError, match=r"rows\[1\] has 1 cells"):
        markdown_table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(ValueError, match="headers is empty"):
        markdown_table([], [])


def test_markdown_image():
    assert markdown_image("learning curves", "figures/curves.png") == "![learning curves](figures/curves.png)"
    assert markdown_image("cm", PurePosixPath("a") / "cm.png") == "![cm](a/cm.png)"
    assert markdown_image("x [1]", "my figs/x.png") == "![x \\[1\\]](<my figs/x.png>)"
