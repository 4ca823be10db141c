import pytest
import soundfile as sf

from deep_speaker.data.corpus import discover_utterances
from deep_speaker.errors import DatasetError
from tests.helpers import synthetic_speech, write_corpus


def _write(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synthetic_speech(0.5), 16000)
    return path


def test_speaker_folders_any_depth(tmp_path):
    _write(tmp_path / "alice" / "a.wav")
    _write(tmp_path / "alice" / "session2" / "deep" / "b.flac")
    _write(tmp_path / "bob" / "c.flac")
    (tmp_path / "bob" / "notes.txt").write_text("ignored")
    utterances = discover_utterances(tmp_path)
    assert [(u.utterance_id, u.speaker) for u in utterances] == [
        ("alice/a", "alice"),
        ("alice/session2/deep/b", "alice"),
        ("bob/c", "bob"),
    ]


def test_librispeech_layout(tmp_path):
    _write(tmp_path / "1255" / "90413" / "1255-90413-0001.flac")
    _write(tmp_path / "84" / "121123" / "84-121123-0000.flac")
    speakers = {u.speaker for u in discover_utterances(tmp_path)}
    assert speakers == {"1255", "84"}


def test_kaldi_data_dir(tmp_path):
    audio = _write(tmp_path / "audio" / "x.wav")
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"utt1 {audio}\nutt2 ../audio/x.wav\n")
    (data / "utt2spk").write_text("utt1 spkA\nutt2 spkB\n")
    utterances = discover_utterances(data)
    assert [(u.utterance_id, u.speaker) for u in utterances] == [("utt1", "spkA"), ("utt2", "spkB")]
    assert utterances[1].path.resolve() == audio.resolve()


def test_kaldi_pipe_is_refused(tmp_path):
    (tmp_path / "wav.scp").write_text("utt1 sox in.sph -t wav - |\n")
    (tmp_path / "utt2spk").write_text("utt1 s\n")
    with pytest.raises(DatasetError, match="command pipe"):
        discover_utterances(tmp_path)


def test_kaldi_without_utt2spk(tmp_path):
    (tmp_path / "wav.scp").write_text("utt1 a.wav\n")
    with pytest.raises(DatasetError, match="no utt2spk"):
        discover_utterances(tmp_path / "wav.scp")


def test_csv_manifest_with_and_without_header(tmp_path):
    _write(tmp_path / "clips" / "1.wav")
    _write(tmp_path / "clips" / "2.wav")
    (tmp_path / "with.csv").write_text("path,speaker\nclips/1.wav,ann\nclips/2.wav,ben\n")
    (tmp_path / "without.csv").write_text("clips/1.wav,ann\nclips/2.wav,ben\n")
    for manifest in ("with.csv", "without.csv"):
        utterances = discover_utterances(tmp_path / manifest)
        assert [(u.utterance_id, u.speaker) for u in utterances] == [("clips/1", "ann"), ("clips/2", "ben")]


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="no audio found"):
        discover_utterances(tmp_path)


def test_files_without_speaker_folder(tmp_path):
    _write(tmp_path / "loose.wav")
    with pytest.raises(DatasetError, match="folder named after the speaker"):
        discover_utterances(tmp_path)


def test_missing_source(tmp_path):
    with pytest.raises(DatasetError, match="no such file or folder"):
        discover_utterances(tmp_path / "absent")


def test_shared_speechocean_train(shared_data):
    utterances = discover_utterances(shared_data / "speechocean762" / "train")
    assert len(utterances) == 2500  # all 20 utterances of each speaker
    assert len({u.speaker for u in utterances}) == 125


def test_synthetic_corpus_helper(tmp_path):
    assert len(discover_utterances(write_corpus(tmp_path, 2, 3))) == 6
