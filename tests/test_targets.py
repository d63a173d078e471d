"""xmargin.targets: format and label-convention helpers, on every namespace."""

from __future__ import annotations

import numpy as np
import pytest

import xmargin
from xmargin import targets


def test_from_multihot_and_back(xp):
    mh = np.array([[0, 1, 0, 1, 1], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0]])
    idx = targets.from_multihot(xp.asarray(mh))
    expected = [[1, 3, 4, -1, -1], [-1] * 5, [0, 1, 2, 3, 4], [2, -1, -1, -1, -1]]
    assert xp.to_numpy(idx).tolist() == expected
    assert str(idx.dtype).endswith("int64")
    back = targets.to_multihot(idx, 5)
    assert xp.to_numpy(back).tolist() == mh.tolist()
    narrow = targets.from_multihot(xp.asarray(mh[[0, 3]]), width=3)
    assert xp.to_numpy(narrow).tolist() == [[1, 3, 4], [2, -1, -1]]
    wide = targets.from_multihot(xp.asarray(mh[[3]]), width=7)
    assert xp.to_numpy(wide).tolist() == [[2, -1, -1, -1, -1, -1, -1]]


def test_multihot_and_index_targets_give_the_same_loss(xp):
    rng = np.random.default_rng(0)
    mh = (rng.random((6, 9)) < 0.3).astype(np.int64)
    x = xp.asarray(rng.normal(size=(6, 9)))
    a = xmargin.multilabel_margin_loss(x, targets.from_multihot(xp.asarray(mh)))
    b = xmargin.multilabel_margin_loss(x, targets.from_multihot(xp.asarray(mh), width=9))
    assert float(a) == float(b)


def test_from_multihot_bool_and_vector():
    assert targets.from_multihot(np.array([True, False, True])).tolist() == [0, 2, -1]


def test_from_multihot_errors():
    with pytest.raises(ValueError, match="a row has 3 positive labels but argument 'width' is 2"):
        targets.from_multihot(np.array([[1, 1, 1, 0]]), width=2)
    with pytest.raises(
        ValueError, match="argument 'multi_hot' must hold only the labels 0 and 1, found 2"
    ):
        targets.from_multihot(np.array([[1, 2, 0]]))
    with pytest.raises(ValueError, match="shape"):
        targets.from_multihot(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="width"):
        targets.from_multihot(np.zeros((1, 2)), width=-1)


def test_to_multihot_semantics_match_the_loss():
    t = np.array([[3, 0, -1, 1], [2, 2, -1, -1], [-1, 3, 3, 3]])
    mh = targets.to_multihot(t, 4)
    assert mh.tolist() == [[1, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert targets.to_multihot(np.array([1, 1]), 3, dtype=np.float32).tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(
        ValueError, match=r"'index_targets' is out of range: index_targets\[0, 1\] = 4"
    ):
        targets.to_multihot(np.array([[0, 4]]), 4)
    with pytest.raises(TypeError, match="integer dtype"):
        targets.to_multihot(np.array([[0.0]]), 4)
    with pytest.raises(ValueError, match="num_classes"):
        targets.to_multihot(np.array([[0]]), 0)


def test_pad(xp):
    like = xp.asarray(np.zeros(1))
    out = targets.pad([[1, 5], [0], []], like=like)
    assert xp.to_numpy(out).tolist() == [[1, 5], [0, -1], [-1, -1]]
    assert type(out) is type(like)
    assert targets.pad([[], []]).tolist() == [[-1], [-1]]
    assert targets.pad([[2]], width=3).tolist() == [[2, -1, -1]]
    assert targets.pad([]).shape == (0, 1)


def test_pad_errors():
    with pytest.raises(ValueError, match="has 2 labels but 'width' is 1"):
        targets.pad([[1, 2]], width=1)
    with pytest.raises(ValueError, match=r"row 1 .* negative label -1"):
        targets.pad([[1], [-1]])
    with pytest.raises(TypeError, match="row 0"):
        targets.pad([[1.5]])
    with pytest.raises(TypeError, match="sequence of sequences"):
        targets.pad("abc")


def test_pad_feeds_the_loss():
    x = np.random.default_rng(1).normal(size=(3, 6))
    ragged = [[1, 5], [0], []]
    wide = np.array([[1, 5, -1, -1, -1, -1], [0, -1, -1, -1, -1, -1], [-1] * 6])
    assert xmargin.multilabel_margin_loss(x, targets.pad(ragged)) == pytest.approx(
        float(xmargin.multilabel_margin_loss(x, wide)), rel=1e-15
    )
    with pytest.raises(TypeError, match=r"argument 'target' .* xmargin.targets.pad\(rows\)"):
        xmargin.multilabel_margin_loss(x, ragged)


def test_label_conventions(xp):
    y01 = xp.asarray(np.array([0, 1, 1, 0]))
    pm1 = targets.to_pm1(y01)
    assert xp.to_numpy(pm1).tolist() == [-1, 1, 1, -1]
    assert xp.to_numpy(targets.to_01(pm1)).tolist() == [0, 1, 1, 0]
    f = targets.to_01(xp.asarray(np.array([-1.0, 1.0])))
    assert xp.to_numpy(f).tolist() == [0.0, 1.0]
    assert targets.to_pm1(np.array([True, False])).tolist() == [1, -1]
    with pytest.raises(
        ValueError, match="argument 'y01' must hold only the labels 0 and 1, found -1"
    ):
        targets.to_pm1(np.array([0, -1]))
    with pytest.raises(
        ValueError, match="argument 'ypm1' must hold only the labels -1 and 1, found 0"
    ):
        targets.to_01(np.array([0, 1]))


@pytest.mark.parametrize(
    "call",
    [
        lambda y: xmargin.soft_margin_loss(np.zeros(4), y),
        lambda y: xmargin.hinge_embedding_loss(np.zeros(4), y),
        lambda y: xmargin.margin_ranking_loss(np.zeros(4), np.ones(4), y),
    ],
)
def test_pm1_losses_warn_on_01_labels(call):
    with pytest.warns(UserWarning, match=r"expects labels in \{-1, \+1\}.*to_pm1"):
        call(np.array([0.0, 1.0, 1.0, 0.0]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call(np.array([-1.0, 1.0, 1.0, -1.0]))
        call(np.array([1.0, 1.0, 1.0, 1.0]))  # all ones: fine in both conventions


def test_multilabel_soft_margin_warns_on_pm1_labels():
    with pytest.warns(UserWarning, match=r"expects labels in \{0, 1\}.*to_01"):
        xmargin.multilabel_soft_margin_loss(np.zeros((2, 2)), np.array([[1.0, -1.0], [1.0, 1.0]]))


def test_warning_points_at_the_caller():
    with pytest.warns(UserWarning) as record:
        xmargin.soft_margin_loss(np.zeros(2), np.array([0.0, 1.0]))
    assert record[0].filename == __file__
