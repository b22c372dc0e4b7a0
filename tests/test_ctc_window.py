"""The CTC window (``ctc_window``): exact when it covers every frame, the same transcripts on peaky
posteriors when it does not, and a long pause does not lose the tokens after it."""

from __future__ import annotations

import pytest
import torch
from test_decoding import (
    _ctc_log_prob,
    _ctc_posteriors,
    _peaky_stub,
    _prefix_scores,
    random_batch,
    tiny_model,
)

from seq2seq.core.text import BLANK_ID, EOS_ID, SOS_ID
from seq2seq.decoding import CTCPrefixScorer, DecodingConfig, beam_search, ctc_greedy


@torch.inference_mode()
@pytest.mark.parametrize("tokens", [[5], [6, 5, 6], [7, 7, 4, 7, 6]])
def test_window_covering_every_frame_gives_the_same_scores(tokens):
    log_probs = _ctc_posteriors(2, 12, 9, seed=len(tokens))
    lengths = torch.tensor([12, 9])
    scores = {}
    for window in (0, 6, 40):  # 2 * 6 = 12 frames: the whole utterance
        scorer = CTCPrefixScorer(lambda memory: memory, window)
        state = scorer.init_state(log_probs, lengths)
        increments, state = _prefix_scores(scorer, state, tokens)
        every, _ = scorer.score(torch.tensor([[SOS_ID, *tokens]]), state, None)
        scores[window] = (increments, every)
    for window in (6, 40):
        assert scores[window][0] == pytest.approx(scores[0][0], abs=1e-9)
        torch.testing.assert_close(scores[window][1], scores[0][1], atol=1e-9, rtol=0)
    total = sum(scores[6][0]) + float(scores[6][1][0, EOS_ID])
    assert total == pytest.approx(_ctc_log_prob(log_probs[:1], lengths[:1], tokens), abs=1e-6)


@torch.inference_mode()
def test_window_covering_every_frame_gives_the_same_beam_search():
    model = tiny_model()
    features, lengths = random_batch([120, 90, 60])  # 4x subsampling: at most 30 encoder frames
    plain = DecodingConfig(beam_size=4, ctc_weight=0.5, max_length_ratio=0.5, nbest=3)
    windowed = DecodingConfig(beam_size=4, ctc_weight=0.5, max_length_ratio=0.5, nbest=3, ctc_window=15)
    a, b = beam_search(model, features, lengths, plain), beam_search(model, features, lengths, windowed)
    assert [[h.tokens for h in hyps] for hyps in a] == [[h.tokens for h in hyps] for hyps in b]
    assert [h.score for hyps in a for h in hyps] == pytest.approx(
        [h.score for hyps in b for h in hyps], abs=1e-6
    )


@torch.inference_mode()
@pytest.mark.parametrize("window", [10, 25])
def test_narrow_window_keeps_the_transcripts_of_peaky_posteriors(window):
    model, posterior = _peaky_stub(batch=3, frames=200, vocab=10, seed=12)
    lengths = torch.tensor([200, 150, 90])
    config = DecodingConfig(beam_size=4, ctc_weight=1.0, max_length_ratio=1.0, ctc_window=window)
    found = [hyps[0].tokens for hyps in beam_search(model, posterior, lengths, config)]
    assert found == ctc_greedy(posterior, lengths)
    assert min(map(len, found)) > 20  # long outputs: the window moved many times


@torch.inference_mode()
def test_window_follows_the_alignment_through_a_long_pause():
    model, posterior = _peaky_stub(batch=1, frames=60, vocab=10, seed=3)
    pause = torch.full((1, 150, 10), -20.0)
    pause[:, :, BLANK_ID] = 0.0
    posterior = torch.cat([pause, posterior, pause, posterior], dim=1).log_softmax(-1)  # 420 frames
    lengths = torch.tensor([420])
    config = DecodingConfig(beam_size=4, ctc_weight=1.0, max_length_ratio=1.0, ctc_window=5)
    found = beam_search(model, posterior, lengths, config)[0][0].tokens
    assert found == ctc_greedy(posterior, lengths)[0]
    scorer = CTCPrefixScorer(lambda memory: memory, 5)
    assert scorer.init_state(posterior, lengths).r.shape[-1] == 2 * 5 + 1  # the state is the window only
