"""Audio features as batched torch modules, written from the equations and tested against librosa.

* :mod:`~deepnotes.audio.features`: :func:`window_function`, :class:`Spectrogram` (framing with
  ``unfold`` + window + ``torch.fft.rfft``), :func:`hz_to_mel` / :func:`mel_to_hz` (HTK and Slaney
  scales), :func:`mel_filterbank`, :class:`MelSpectrogram`, :func:`to_db` / :class:`AmplitudeToDB`,
  :class:`LogMelSpectrogram`, :func:`dct_matrix`, :class:`MFCC`, :func:`delta_coefficients`,
  :func:`compute_deltas` / :class:`Deltas`, :func:`add_deltas`, and HW2's 39-dim frame features
  :class:`MFCCWithDeltas` / :func:`mfcc_with_deltas`.
* :mod:`~deepnotes.audio.augment`: speed perturbation, time shift, noise mixing, VTLP, SpecAugment (batched, seeded);
  :mod:`~deepnotes.audio.frontend`: the keyword-spotting features and per-batch augmentation;
  :mod:`~deepnotes.audio.figures`: the seed exercise's pictures.

Every module takes a ``(..., T)`` waveform (any leading batch dimensions, float32 or float64, any
device) and returns ``(..., n_freqs_or_mels_or_coefficients, n_frames)``.
"""

from deepnotes.audio.features import (MFCC, AmplitudeToDB, Deltas, LogMelSpectrogram, MelSpectrogram, MFCCWithDeltas,
                                      Spectrogram, add_deltas, compute_deltas, dct_matrix, delta_coefficients,
                                      hz_to_mel, mel_filterbank, mel_to_hz, mfcc_with_deltas, to_db, window_function)

__all__ = ["MFCC", "AmplitudeToDB", "Deltas", "LogMelSpectrogram", "MelSpectrogram", "MFCCWithDeltas", "Spectrogram",
           "add_deltas", "compute_deltas", "dct_matrix", "delta_coefficients", "hz_to_mel", "mel_filterbank",
           "mel_to_hz", "mfcc_with_deltas", "to_db", "window_function"]
