import numpy as np

from deep_speaker.config import load_recipe
from deep_speaker.data.augment import mask_spans
from deep_speaker.data.batches import ClassificationBatches, TripletBatches
from deep_speaker.data.split import SpeakerFeatures


def test_split_is_per_speaker_and_persisted(working_dir):
    data = SpeakerFeatures(working_dir, 0.4)
    assert len(data.validation) == 8 and len(data.train) == 12
    assert sorted(data.labels[data.validation]) == [0, 0, 1, 1, 2, 2, 3, 3]
    again = SpeakerFeatures(working_dir, 0.5)
    np.testing.assert_array_equal(again.validation, data.validation)


def test_classification_batches_are_seeded_by_epoch_and_index(working_dir):
    data = SpeakerFeatures(working_dir, 0.4)
    run = load_recipe("classification", batch_size=6, num_frames=40).run
    x, y = ClassificationBatches(data, run)[1]
    assert x.shape == (6, 40, 64) and set(y) <= set(data.labels[data.train])
    np.testing.assert_array_equal(ClassificationBatches(data, run)[1][0], x)
    assert not np.array_equal(ClassificationBatches(data, run, initial_epoch=1)[1][0], x)


def test_hard_negatives_are_other_speakers_and_closest(working_dir):
    data = SpeakerFeatures(working_dir, 0.4)
    run = load_recipe("triplet", batch_size=12, num_frames=40).run
    batches = TripletBatches(data, run, negative_candidates=12)
    x, y = batches[0]
    assert x.shape == (12, 40, 64) and y.shape == (12,)
    # speaker 1 embeds exactly like speaker 0, the others are orthogonal: speaker 0's negatives must be speaker 1
    directions = np.eye(4, dtype=np.float32)
    directions[1] = directions[0]
    batches.embeddings = directions[data.labels]
    rng = np.random.default_rng(0)
    for _ in range(10):
        anchors, positives, negatives = batches.triplet_indices(rng)
        assert np.all(data.labels[anchors] == data.labels[positives]) and np.all(anchors != positives)
        assert np.all(data.labels[negatives] != data.labels[anchors])
        for anchor, negative in zip(anchors, negatives):
            if data.labels[anchor] == 0:
                assert data.labels[negative] == 1


def test_mask_spans_zeroes_one_band_and_one_span_per_crop():
    crops = np.ones((50, 40, 64), np.float32)
    mask_spans(crops, np.random.default_rng(0), max_bands=8, max_frames=10)
    for crop in crops:
        zero_bands = np.flatnonzero((crop == 0).all(axis=0))
        zero_frames = np.flatnonzero((crop == 0).all(axis=1))
        assert zero_bands.size <= 8 and zero_frames.size <= 10
        for run in (zero_bands, zero_frames):
            assert run.size == 0 or run[-1] - run[0] == run.size - 1
        kept = np.ones_like(crop, bool)
        kept[:, zero_bands] = False
        kept[zero_frames] = False
        assert (crop[kept] == 1).all()
    assert (crops == 0).any()


def test_augmented_batches_perturb_speed_into_new_classes_and_reproduce(working_dir):
    from deep_speaker.data.augment import WaveformAugmentation
    from deep_speaker.data.batches import AugmentedBatches
    from deep_speaker.data.split import SpeakerWaveforms

    data = SpeakerFeatures(working_dir, 0.4)
    run = load_recipe("classification", batch_size=8, num_frames=40).run
    waveforms = SpeakerWaveforms(data, progress=False)
    config = WaveformAugmentation(noise_probability=1.0, reverb_probability=1.0, channel_probability=1.0)
    batches = AugmentedBatches(data, waveforms, run, config, speeds=(1.0, 0.9, 1.1), spec_augment=True)
    x, y = batches[3]
    assert x.shape == (8, 40, 64) and np.all(np.isfinite(x)) and batches.num_classes == 3 * len(data.speakers)
    assert set(y // len(data.speakers)) <= {0, 1, 2} and set(y % len(data.speakers)) <= set(data.labels[data.train])
    again, _ = AugmentedBatches(data, waveforms, run, config, speeds=(1.0, 0.9, 1.1), spec_augment=True)[3]
    np.testing.assert_array_equal(again, x)
    assert not np.array_equal(batches[4][0], x)
