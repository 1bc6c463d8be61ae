"""The paper's numbers: exactly the ones we were given, none invented, none marked as checked."""

from __future__ import annotations

import pytest

from bench import paper

# Every (table, row, column) -> printed text we hold. A new entry must be added here on purpose.
EXPECTED = {
    ("table1", "DBN", "mnist_10k"): "138 ± 2",
    ("table1", "DBN", "tfd_10k"): "1909 ± 66",
    ("table1", "Stacked CAE", "mnist_10k"): "121 ± 1.6",
    ("table1", "Stacked CAE", "tfd_10k"): "2110 ± 50",
    ("table1", "Deep GSN", "mnist_10k"): "214 ± 1.1",
    ("table1", "Deep GSN", "tfd_10k"): "1890 ± 29",
    ("table1", "GAN", "mnist_10k"): "225 ± 2",
    ("table1", "GAN", "tfd_10k"): "2057 ± 26",
    ("table1", "GMMN+AE", "mnist_10k"): "282 ± 2",
    ("table1", "GMMN+AE", "tfd_10k"): "2204 ± 20",
    ("table1", "AAE", "mnist_10k"): "340 ± 2",
    ("table1", "AAE", "tfd_10k"): "2252 ± 16",
    ("table1", "GAN", "mnist_10m"): "386",
    ("table1", "AAE", "mnist_10m"): "427",
    ("table1", "AAE", "tfd_10m"): "2522",
    ("table2", "AAE", "mnist_100"): "1.90 ± 0.10",
    ("table2", "AAE", "mnist_1000"): "1.60 ± 0.08",
    ("table2", "AAE", "mnist_all"): "0.85 ± 0.02",
    ("table2", "AAE", "svhn_1000"): "17.70 ± 0.30",
    ("table3", "AAE", "clusters_16"): "9.55 ± 2.05",
    ("table3", "AAE", "clusters_30"): "4.10 ± 1.13",
    ("table3", "CatGAN", "clusters_20"): "9.70",
    ("dim_reduction", "AAE", "mnist_100"): "",
    ("dim_reduction", "AAE", "mnist_1000"): "",
    ("dim_reduction", "AAE", "clusters_20"): "",
}


def test_exactly_the_listed_numbers():
    held = {(n.table, n.row, n.column): n.printed for n in paper.PAPER_NUMBERS}
    assert held == EXPECTED
    assert len(paper.PAPER_NUMBERS) == len(held)  # no duplicates


@pytest.mark.parametrize("key,value,pm", [
    (("table1", "AAE", "mnist_10k"), 340.0, 2.0),
    (("table1", "Stacked CAE", "mnist_10k"), 121.0, 1.6),
    (("table1", "DBN", "tfd_10k"), 1909.0, 66.0),
    (("table1", "AAE", "tfd_10m"), 2522.0, None),
    (("table2", "AAE", "mnist_100"), 1.90, 0.10),
    (("table2", "AAE", "svhn_1000"), 17.70, 0.30),
    (("table3", "AAE", "clusters_30"), 4.10, 1.13),
    (("table3", "CatGAN", "clusters_20"), 9.70, None),
])
def test_values(key, value, pm):
    number = paper.paper_number(*key)
    assert number is not None
    assert number.value == pytest.approx(value)
    assert (number.pm is None) if pm is None else number.pm == pytest.approx(pm)


def test_nothing_is_checked_and_every_number_has_a_source():
    for number in paper.PAPER_NUMBERS:
        assert number.checked is False
        assert number.mark == paper.UNCHECKED_MARK
        assert number.source and number.note


def test_sources():
    gan = "as printed in the GAN paper's Table 1 (Goodfellow et al. 2014)"
    for row in ("DBN", "Stacked CAE", "Deep GSN", "GAN"):
        assert paper.paper_number("table1", row, "mnist_10k").source == gan
    assert paper.paper_number("table1", "AAE", "mnist_10k").source == "quoted by later papers"
    assert paper.paper_number("table1", "AAE", "mnist_10m").source == "unchecked"
    assert "± unchecked" in paper.paper_number("table2", "AAE", "mnist_all").source


def test_table2_has_only_the_aae_row_and_dim_reduction_is_unknown():
    assert paper.paper_rows("table2") == ["AAE"]
    for column in ("mnist_100", "mnist_1000", "clusters_20"):
        unknown = paper.paper_number("dim_reduction", "AAE", column)
        assert unknown.value is None and "unknown to us" in unknown.source
    assert paper.paper_number("table1", "GAN", "tfd_10m") is None  # not given: stays empty
    assert paper.paper_rows("table1") == ["DBN", "Stacked CAE", "Deep GSN", "GAN", "GMMN+AE",
                                          "AAE"]
