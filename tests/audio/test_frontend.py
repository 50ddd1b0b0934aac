"""The keyword-spotting front end: feature shapes and normalizations, the VTLP path, the training draws in their
documented order, test-time averaging over warps, and the augmentation's description."""

from __future__ import annotations

import pytest
import torch

from deepnotes.audio.augment import mix_noise, random_eq, spec_augment, speed_perturb, time_shift, uniform_factors
from deepnotes.audio.frontend import BatchPreparer, FeatureExtractor, SpeechAugment, feature_stats, predict

AUG = SpeechAugment(speed_perturb=0.1, vtlp=0.1, time_shift_ms=100.0, noise_prob=0.8, snr_db=(5.0, 30.0),
                    freq_masks=2, max_freq_mask=0.15, time_masks=2, max_time_mask=0.2)


def test_feature_extractor_shapes():
    w = torch.randn(2, 16000) * 0.1
    assert FeatureExtractor("logmel")(w).shape == (2, 1, 40, 101)
    assert FeatureExtractor("spectrogram")(w).shape == (2, 1, 201, 81)  # the exercise's (201, 81)
    assert FeatureExtractor("waveform")(w).shape == (2, 16000)
    with pytest.raises(ValueError, match="kind"):
        FeatureExtractor("mfcc")


def test_feature_extractor_vtlp_path_matches_the_plain_features():
    w = torch.randn(3, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    for kind in ("logmel", "spectrogram"):
        fe = FeatureExtractor(kind)
        torch.testing.assert_close(fe.raw(w, torch.ones(3)), fe.raw(w), atol=1e-3, rtol=1e-4)
        assert not torch.allclose(fe.raw(w, torch.full((3,), 1.1)), fe.raw(w), atol=1e-2)
    with pytest.raises(ValueError, match="m5"):
        FeatureExtractor("waveform").raw(w, torch.ones(3))


def test_per_utterance_normalizations():
    w = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1)) * 0.1
    utt, band = FeatureExtractor("logmel", norm="utterance"), FeatureExtractor("logmel", norm="band")
    u, b = utt(w), band(w)
    torch.testing.assert_close(u.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-4, rtol=0)
    torch.testing.assert_close(u.std(dim=(1, 2, 3), unbiased=False), torch.ones(2), atol=1e-3, rtol=0)
    torch.testing.assert_close(b.mean(dim=-1), torch.zeros(2, 1, 40), atol=1e-4, rtol=0)
    torch.testing.assert_close(b.std(dim=-1, unbiased=False), torch.ones(2, 1, 40), atol=1e-3, rtol=0)
    # a louder clip (+6 dB everywhere above the floor) gives the same features; the global normalization does not
    torch.testing.assert_close(utt(2 * w), u, atol=1e-3, rtol=0)
    torch.testing.assert_close(band(2 * w), b, atol=1e-3, rtol=0)
    glob = FeatureExtractor("logmel", mean=-40.0, std=20.0)
    assert (glob(2 * w) - glob(w)).mean() > 0.2
    with pytest.raises(ValueError, match="norm"):
        FeatureExtractor("waveform", norm="band")
    with pytest.raises(ValueError, match="norm"):
        FeatureExtractor("logmel", norm="cmvn")


def test_feature_stats_are_the_mean_and_std_of_the_raw_features():
    clips = (torch.randn(7, 16000, generator=torch.Generator().manual_seed(4)) * 3000).to(torch.int16)
    fe = FeatureExtractor("logmel")
    mean, std = feature_stats(fe, clips, batch=3)
    f = fe.raw(clips.float() / 32768.0).double()
    assert mean == pytest.approx(float(f.mean()), rel=1e-9) and std == pytest.approx(float(f.std(unbiased=False)), rel=1e-6)


def test_training_batch_draws_in_the_documented_order():
    clips = (torch.randn(4, 16000, generator=torch.Generator().manual_seed(0)) * 3000).to(torch.int16)
    noise = [torch.randn(20000, generator=torch.Generator().manual_seed(1))]
    prep = BatchPreparer(FeatureExtractor("logmel", norm="utterance"), AUG, noise, torch.device("cpu"))
    x, y = prep(clips, torch.arange(4), True, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)  # by hand: speed, shift, noise, VTLP factors, SpecAugment masks
    w = clips.float() / 32768.0
    w = mix_noise(time_shift(speed_perturb(w, 0.1, g), 1600, g), noise, (5.0, 30.0), 0.8, g)
    f = prep.features(w, uniform_factors(4, 0.1, g))
    expected = spec_augment(f, 2, int(0.15 * 40), 2, int(0.2 * 101), g)
    torch.testing.assert_close(x, expected, rtol=0, atol=0)
    assert x.is_contiguous(memory_format=torch.channels_last) and torch.equal(y, torch.arange(4))
    plain, _ = prep(clips, torch.arange(4), False, None)  # evaluation: no augmentation, no draws
    torch.testing.assert_close(plain, prep.features(clips.float() / 32768.0))
    m5 = BatchPreparer(FeatureExtractor("waveform"), AUG, [], torch.device("cpu"))
    assert m5.warp_factors(4, None) is None and m5(clips, torch.arange(4), True, torch.Generator())[0].shape == (4, 16000)


def test_the_equalizer_is_drawn_after_vtlp_on_the_db_features_before_normalization():
    clips = (torch.randn(3, 16000, generator=torch.Generator().manual_seed(0)) * 3000).to(torch.int16)
    aug = SpeechAugment(vtlp=0.1, freq_masks=1, max_freq_mask=0.1, eq_db=8.0)
    prep = BatchPreparer(FeatureExtractor("logmel", norm="utterance"), aug, [], torch.device("cpu"))
    x, _ = prep(clips, torch.arange(3), True, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # by hand: VTLP factors, the equalizer on dB, normalization, SpecAugment
    f = prep.features.raw(clips.float() / 32768.0, uniform_factors(3, 0.1, g))
    expected = spec_augment(prep.features.normalize(random_eq(f, 8.0, g)), 1, 4, 0, 0, g)
    torch.testing.assert_close(x, expected, rtol=0, atol=0)
    without = BatchPreparer(FeatureExtractor("logmel", norm="utterance"), SpeechAugment(vtlp=0.1, freq_masks=1,
                            max_freq_mask=0.1), [], torch.device("cpu"))(clips, torch.arange(3), True,
                                                                           torch.Generator().manual_seed(5))[0]
    assert (x - without).abs().max() > 0.05  # the equalizer changes the inputs
    assert "a random smooth equalizer up to 8 dB" in aug.describe()


def test_predict_averages_the_probabilities_over_the_warps():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40 * 101, 35)).eval()  # log-mel (1, 40, 101) in
    prep = BatchPreparer(FeatureExtractor("logmel"), SpeechAugment(), [], torch.device("cpu"), channels_last=False)
    clips = (torch.randn(5, 16000, generator=torch.Generator().manual_seed(2)) * 3000).to(torch.int16)
    plain = predict(model, prep, clips)
    torch.testing.assert_close(predict(model, prep, clips, warps=(1.0,)), plain)
    with torch.no_grad():
        w = prep.wave(clips)
        manual = sum(model(prep.inputs(w, torch.full((5,), a))).softmax(-1) for a in (0.9, 1.1)) / 2
    both = predict(model, prep, clips, warps=(0.9, 1.1))
    torch.testing.assert_close(both, manual)
    assert (both - plain).abs().max() > 1e-3  # the warps change the answer
    torch.testing.assert_close(predict(model, prep, clips, batch_size=2), plain)


def test_speech_augment_of_a_config_and_its_description():
    class Cfg:
        speed_perturb, vtlp, time_shift_ms, noise_prob, snr_db = 0.1, 0.0, 50.0, 0.5, (5.0, 10.0)
        freq_masks, max_freq_mask, time_masks, max_time_mask, other = 1, 0.1, 0, 0.2, "ignored"

    aug = SpeechAugment.of(Cfg())
    assert aug.time_shift_ms == 50.0 and aug.freq_masks == 1 and aug.eq_db == 0.0  # eq_db missing: its default
    text = aug.describe(spectral=True, n_noise=3)
    assert text == ("speed perturbation by a factor in [0.9, 1.1]; time shift up to 50 ms; background noise (3 "
                    "recordings) on 50% of the clips at 5-10 dB SNR; SpecAugment: 1 frequency masks up to 10% of the "
                    "bins, 0 time masks up to 20% of the frames")
    assert "SpecAugment" not in aug.describe(spectral=False, n_noise=0) and SpeechAugment().describe() == "none"
