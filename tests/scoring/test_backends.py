import numpy as np
import pytest

from deep_speaker.errors import ConfigError
from deep_speaker.scoring import CosineScorer, build_scorer


def test_cosine_matrix_pairs_and_single_agree():
    rng = np.random.default_rng(0)
    enroll, test = rng.standard_normal((4, 8)), rng.standard_normal((4, 8))
    scorer = CosineScorer()
    matrix = scorer.score_matrix(enroll, test)
    expected = (enroll / np.linalg.norm(enroll, axis=1, keepdims=True)) @ (test / np.linalg.norm(test, axis=1, keepdims=True)).T
    np.testing.assert_allclose(matrix, expected, atol=1e-12)
    np.testing.assert_allclose(scorer.score_pairs(enroll, test), np.diag(matrix), atol=1e-12)
    assert scorer.score(enroll[1], test[2]) == pytest.approx(matrix[1, 2])
    assert scorer.score([3, 4], [6, 8]) == pytest.approx(1.0) and scorer.score([1, 0], [0, 1]) == 0.0


def test_registry():
    assert isinstance(build_scorer("cosine"), CosineScorer)
    with pytest.raises(ConfigError, match="unknown scorer 'plda'"):
        build_scorer("plda")
