"""The paper's released checkpoint format, imported: the same gates and logits as the official computation."""

import json

import pytest
import torch

from autosteer_interp.errors import ArtifactError, InvalidInputError, LayerIndexError, UnsupportedModelError
from autosteer_interp.models import tiny_image
from autosteer_interp.official import import_official
from autosteer_interp.prompts import Prompt, builtin_pairs, encode_prompts
from autosteer_interp.steer import AutoSteer
from tests.reference.official_formulas import OfficialLinearProber, official_inputs, official_logits, official_p_toxic

LAYER = 2


@pytest.fixture(params=["tiny_llava", "tiny_chameleon"])
def model(request):
    return request.getfixturevalue(request.param)


def official_files(tmp_path, d_model=64, seed=0):
    """Files exactly as the official training code writes them: a LinearProber state dict and a raw S tensor."""
    torch.manual_seed(seed)
    prober = OfficialLinearProber((d_model, 64, 2))
    S = torch.eye(d_model) + 0.5 * torch.randn(d_model, d_model)
    (tmp_path / f"layer{LAYER}").mkdir(exist_ok=True)
    torch.save(prober.state_dict(), tmp_path / f"layer{LAYER}" / "epoch_37.pt")
    torch.save(S, tmp_path / "Epoch_12.pt")
    return prober, S, tmp_path / f"layer{LAYER}" / "epoch_37.pt", tmp_path / "Epoch_12.pt"


def prompts():
    pairs = builtin_pairs()
    with_images = [Prompt(p.harmful.text, tiny_image(i)) for i, p in enumerate(pairs[6:9])]
    return [p.harmful for p in pairs[:6]] + [p.safe for p in pairs[:6]] + with_images


def test_imported_gates_and_logits_equal_the_official_computation(model, tmp_path):
    official, S, prober_file, matrix_file = official_files(tmp_path)
    requests = prompts()
    p_official = torch.tensor([official_p_toxic(model, p, LAYER, official) for p in requests])
    threshold = float(p_official.median())  # random weights: put half of the requests above the threshold
    steer = import_official(prober_file, matrix_file, layer=LAYER, model=model, epsilon=0.1, threshold=threshold)
    assert steer.prompt_format == "paper"
    for prompt, p in zip(requests, p_official.tolist()):
        inputs = steer.encode(model, [prompt])
        with torch.no_grad(), model.trace(**inputs):
            report = steer.apply(model)
            logits = model.lm_head.output.save()
        assert abs(float(report.p_harmful[0]) - p) < 1e-5
        assert bool(report.gate[0]) == (p > threshold)
        expected = official_logits(model, prompt, S, 0.1, gate=p > threshold)
        got = logits[0, -1].float()
        scale = expected.abs().max()
        if model._module.config.model_type == "chameleon":  # Chameleon masks image-code logits after the head
            keep = got > torch.finfo(got.dtype).min
            got, expected = got[keep], expected[keep]
        assert (got - expected).abs().max() <= 1e-5 * scale


def test_the_paper_format_is_the_official_prompt_token_for_token(model):
    for prompt in prompts():
        ours = encode_prompts(model, [prompt], prompt_format="paper")
        official = official_inputs(model, prompt)
        assert ours["input_ids"].tolist() == official["input_ids"].tolist()
        if "pixel_values" in official:
            assert torch.equal(ours["pixel_values"], official["pixel_values"].to(ours["pixel_values"].dtype))
        chat = encode_prompts(model, [prompt])["input_ids"][0].tolist()
        assert chat != ours["input_ids"][0].tolist()  # our default probes another token


def test_the_paper_format_is_refused_for_other_models(tiny_qwen2):
    with pytest.raises(UnsupportedModelError, match="llava_onevision, chameleon"):
        encode_prompts(tiny_qwen2, [Prompt("hi")], prompt_format="paper")
    with pytest.raises(InvalidInputError, match="prompt_format"):
        encode_prompts(tiny_qwen2, [Prompt("hi")], prompt_format="raw")


def test_the_import_records_its_sources_and_survives_a_save(tiny_llava, tmp_path):
    _, _, prober_file, matrix_file = official_files(tmp_path)
    steer = import_official(prober_file, matrix_file, layer=LAYER, model=tiny_llava)
    assert steer.origin["prober"]["file"] == "epoch_37.pt" and len(steer.origin["steer_matrix"]["sha256"]) == 64
    assert steer.threshold == 0.5 and steer.epsilon == 0.1 and steer.layers == (LAYER,)
    steer.save(tmp_path / "saved")
    loaded = AutoSteer.load(tmp_path / "saved", model=tiny_llava)
    assert loaded.origin == steer.origin and loaded.prompt_format == "paper"
    x = torch.randn(5, 64)
    assert torch.equal(loaded.prober.predict_proba(x), steer.prober.predict_proba(x))
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["origin"]["label_order"].startswith("official softmax index 0 = toxic")


def test_the_label_order_is_swapped_not_copied(tmp_path):
    official, _, prober_file, matrix_file = official_files(tmp_path)
    steer = import_official(prober_file, matrix_file, layer=LAYER)
    x = torch.randn(20, 64)
    with torch.no_grad():
        assert torch.allclose(steer.prober.predict_proba(x), official(x)[:, 0], atol=1e-6)
        assert not torch.allclose(steer.prober.predict_proba(x), official(x)[:, 1], atol=1e-3)


def test_wrong_official_files_are_refused_with_what_was_found(tmp_path):
    official, S, prober_file, matrix_file = official_files(tmp_path)
    bad = tmp_path / "bad.pt"
    torch.save({"layers.0.weight": torch.ones(64, 64)}, bad)
    with pytest.raises(ArtifactError, match="not an official LinearProber state dict.*found \\['layers.0.weight'\\]"):
        import_official(bad, matrix_file, layer=LAYER)
    state = dict(official.state_dict())
    state["layers.2.weight"] = torch.ones(3, 64)
    torch.save(state, bad)
    with pytest.raises(ArtifactError, match="layers.2.weight has shape \\(3, 64\\)"):
        import_official(bad, matrix_file, layer=LAYER)
    torch.save(torch.ones(32, 32), bad)
    with pytest.raises(ArtifactError, match="d = 64.*found \\(32, 32\\)"):
        import_official(prober_file, bad, layer=LAYER)
    torch.save(torch.full((64, 64), float("nan")), bad)
    with pytest.raises(ArtifactError, match="NaN"):
        import_official(prober_file, bad, layer=LAYER)
    with pytest.raises(ArtifactError, match="does not exist"):
        import_official(tmp_path / "nope.pt", matrix_file, layer=LAYER)


def test_a_pickle_that_runs_code_is_refused_without_running(tmp_path):
    _, _, prober_file, _ = official_files(tmp_path)
    marker = tmp_path / "ran"
    bad = tmp_path / "evil.pt"
    bad.write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(ArtifactError, match="not a weights-only torch file"):
        import_official(prober_file, bad, layer=LAYER)
    assert not marker.exists()


def test_the_files_must_fit_the_model(tiny_llava, tmp_path):
    (tmp_path / "wide").mkdir()
    _, _, prober_file, matrix_file = official_files(tmp_path / "wide", d_model=32)
    with pytest.raises(InvalidInputError, match="d_model 32; this model .* has 64"):
        import_official(prober_file, matrix_file, layer=LAYER, model=tiny_llava)
    _, _, prober_file, matrix_file = official_files(tmp_path)
    with pytest.raises(LayerIndexError, match="9"):
        import_official(prober_file, matrix_file, layer=9, model=tiny_llava)
    with pytest.raises(InvalidInputError, match="epsilon"):
        import_official(prober_file, matrix_file, layer=LAYER, epsilon=float("nan"))
    with pytest.raises(InvalidInputError, match="threshold"):
        import_official(prober_file, matrix_file, layer=LAYER, threshold=2.0)
    steer = import_official(prober_file, matrix_file, layer=LAYER, model=tiny_llava)
    assert steer.provenance is not None
    steer.check_model(tiny_llava)
