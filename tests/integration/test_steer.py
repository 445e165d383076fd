"""AutoSteer on tiny models: per-sample gating in nnsight traces, generation and plain HF hooks."""

import pytest
import torch

from autosteer_interp.activations import collect_activations
from autosteer_interp.errors import ArtifactError, InvalidInputError, LayerIndexError
from autosteer_interp.models import build_tiny_llava_onevision, tiny_image, wrap
from autosteer_interp.prober import ProberConfig, SafetyProber
from autosteer_interp.prompts import Prompt, builtin_pairs, encode_prompts
from autosteer_interp.refusal_head import RefusalHead, RefusalHeadConfig
from autosteer_interp.steer import AutoSteer
from tests.reference.paper_formulas import paper_refusal_logits

LAYER = 2


def mixed_batch():
    """Harmful and benign requests of different lengths, some with images."""
    pairs = builtin_pairs()
    return [
        Prompt(pairs[0].harmful.text, tiny_image(1)),
        pairs[1].safe,
        Prompt("What is in this picture?", tiny_image(2, (20, 30))),
        pairs[3].harmful,
        Prompt("Hi"),
    ]


def make_steer(model, prompts, gate_mode="prefill", layers=(LAYER,)):
    """A prober fitted on built-in pairs and a random head, thresholded so the batch is half gated."""
    pairs = builtin_pairs()[:40]
    layers = list(layers)
    harmful = collect_activations(model, [p.harmful for p in pairs], layers, progress=False)
    safe = collect_activations(model, [p.safe for p in pairs], layers, progress=False)
    config = ProberConfig(kind="linear", epochs=20)
    prober = SafetyProber.fit(harmful, safe, config=config, layers=layers, model=model)
    head = RefusalHead(64, epsilon=0.5)
    with torch.no_grad():
        head.S.add_(torch.randn(64, 64, generator=torch.Generator().manual_seed(0)))
    head.provenance = prober.provenance
    p = prober.predict_proba(collect_activations(model, prompts, layers, progress=False).values)
    ordered = torch.sort(p).values
    middle = len(ordered) // 2
    threshold = float(ordered[middle - 1 : middle + 1].mean())  # between two samples: no row sits on it
    return AutoSteer(prober, head, threshold=threshold, gate_mode=gate_mode), p


@pytest.fixture(params=["tiny_llava", "tiny_chameleon"])
def model(request):
    return request.getfixturevalue(request.param)


def test_apply_in_a_trace_steers_exactly_the_gated_rows(model):
    prompts = mixed_batch()
    steer, p_expected = make_steer(model, prompts)
    inputs = encode_prompts(model, prompts)
    hf = model._module
    with torch.no_grad(), model.trace(**inputs):
        report = steer.apply(model)
        logits = model.lm_head.output.save()
    with torch.no_grad():
        plain = hf(**inputs).logits
        hidden = hf.model(**inputs).last_hidden_state
    gate = report.gate
    assert 0 < int(gate.sum()) < len(prompts)
    assert torch.allclose(report.p_harmful, p_expected, atol=1e-5)  # per sample, batch-invariant
    assert torch.equal(logits[~gate], plain[~gate])  # bit-identical
    reference = paper_refusal_logits(hidden[gate], hf.lm_head.weight.detach(), steer.head.S.detach(), 0.5)
    vocab = reference.shape[-1]
    if resolve_type(model) == "chameleon":  # image-code logits are masked after the LM head
        keep = logits[gate][0, 0] > torch.finfo(logits.dtype).min
        assert torch.allclose(logits[gate][..., keep], reference[..., keep], atol=1e-4)
    else:
        assert torch.allclose(logits[gate][..., :vocab], reference, atol=1e-4)


def resolve_type(model):
    return model._module.config.model_type


def test_a_gate_on_several_layers_is_the_same_in_traces_generation_and_hooks(tiny_llava):
    prompts = mixed_batch()
    steer, p_expected = make_steer(tiny_llava, prompts, layers=(1, 3))
    assert steer.layers == (1, 3)
    inputs = encode_prompts(tiny_llava, prompts)
    with torch.no_grad(), tiny_llava.trace(**inputs):
        report = steer.apply(tiny_llava)
    assert torch.allclose(report.p_harmful, p_expected, atol=1e-5) and 0 < int(report.gate.sum()) < len(prompts)
    kwargs = dict(max_new_tokens=4, min_new_tokens=4, do_sample=False)
    with torch.no_grad(), tiny_llava.generate(**inputs, **kwargs) as tracer:
        generated = steer.apply(tiny_llava, tracer, steps=4)
        ids = tracer.result.save()
    result = steer.generate(tiny_llava, prompts, batch_size=len(prompts), **kwargs)
    assert torch.equal(result.gate, report.gate) and torch.equal(generated.gate, report.gate)
    assert torch.equal(result.token_ids, ids[:, inputs["input_ids"].shape[1] :])


def test_generation_attach_and_one_by_one_agree(model):
    prompts = mixed_batch()
    steer, _ = make_steer(model, prompts)
    inputs = encode_prompts(model, prompts)
    n = 5
    kwargs = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False)
    with torch.no_grad(), model.generate(**inputs, **kwargs) as tracer:
        report = steer.apply(model, tracer, steps=n)
        ids = tracer.result.save()
    via_nnsight = ids[:, inputs["input_ids"].shape[1] :]
    result = steer.generate(model, prompts, batch_size=len(prompts), **kwargs)
    assert torch.equal(result.gate, report.gate) and torch.equal(result.token_ids, via_nnsight)
    alone = [steer.generate(model, [prompt], **kwargs) for prompt in prompts]
    assert torch.equal(torch.cat([r.gate for r in alone]), report.gate)
    assert all(torch.equal(r.token_ids[0], via_nnsight[i]) for i, r in enumerate(alone))
    with torch.no_grad():
        plain = model._module.generate(**inputs, **kwargs)[:, inputs["input_ids"].shape[1] :]
    assert torch.equal(via_nnsight[~report.gate], plain[~report.gate])


def test_every_step_gating_is_the_same_in_nnsight_and_hooks_and_never_switches_off(tiny_llava):
    prompts = mixed_batch()
    steer, _ = make_steer(tiny_llava, prompts, gate_mode="every_step")
    steer = steer.with_threshold(float(steer.threshold) + 0.02)
    inputs = encode_prompts(tiny_llava, prompts)
    kwargs = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False)
    with torch.no_grad(), tiny_llava.generate(**inputs, **kwargs) as tracer:
        report = steer.apply(tiny_llava, tracer, steps=6)
        ids = tracer.result.save()
    result = steer.generate(tiny_llava, prompts, batch_size=len(prompts), **kwargs)
    assert torch.equal(result.gate, report.gate)
    assert torch.equal(result.token_ids, ids[:, inputs["input_ids"].shape[1] :])
    assert bool((report.gate >= (report.p_harmful > steer.threshold)).all())


def test_autosteer_composes_with_the_users_own_patching_and_saving(tiny_llava):
    prompts = mixed_batch()
    steer, _ = make_steer(tiny_llava, prompts)
    inputs = encode_prompts(tiny_llava, prompts)
    layers = tiny_llava.model.language_model.layers
    with torch.no_grad(), tiny_llava.trace(**inputs):
        layers[0].output[:] = layers[0].output * 1.0  # the user's own (neutral) patch, before the steering layer
        before = layers[1].output.save()
        report = steer.read_gate(tiny_llava)  # reads layer 2
        after = layers[3].output.save()  # the user's own read between the steering layer and the LM head
        steer.apply_head(tiny_llava, report)
        logits = tiny_llava.lm_head.output.save()
    with torch.no_grad(), tiny_llava.trace(**inputs):
        report_alone = steer.apply(tiny_llava)
        logits_alone = tiny_llava.lm_head.output.save()
    assert before.shape == after.shape == (len(prompts), inputs["input_ids"].shape[1], 64)
    assert torch.equal(report.gate, report_alone.gate) and torch.allclose(logits, logits_alone)


def test_save_and_load_round_trip(tiny_llava, tmp_path):
    prompts = mixed_batch()
    steer, _ = make_steer(tiny_llava, prompts)
    steer.save(tmp_path / "steer")
    loaded = AutoSteer.load(tmp_path / "steer", model=tiny_llava)
    assert (loaded.layers, loaded.threshold, loaded.epsilon) == (steer.layers, steer.threshold, steer.epsilon)
    inputs = encode_prompts(tiny_llava, prompts)
    with torch.no_grad(), tiny_llava.trace(**inputs):
        a = steer.apply(tiny_llava)
        logits_a = tiny_llava.lm_head.output.save()
    with torch.no_grad(), tiny_llava.trace(**inputs):
        b = loaded.apply(tiny_llava)
        logits_b = tiny_llava.lm_head.output.save()
    assert torch.equal(a.gate, b.gate) and torch.equal(logits_a, logits_b)
    with pytest.raises(ArtifactError, match="already exists"):
        steer.save(tmp_path / "steer")


def test_bad_input_is_refused_before_any_forward(tiny_llava):
    prompts = mixed_batch()
    steer, _ = make_steer(tiny_llava, prompts)
    with pytest.raises(InvalidInputError, match="inside `with model.trace"):
        steer.apply(tiny_llava)
    with pytest.raises(InvalidInputError, match="at least one prompt"):
        steer.generate(tiny_llava, [])
    for bad in (1.5, -0.1):
        with pytest.raises(InvalidInputError, match=r"threshold must be a number in \[0, 1\]"):
            steer.with_threshold(bad)
    other, tokenizer, processor = build_tiny_llava_onevision(seed=5)
    other_model = wrap(other, tokenizer, processor)
    with pytest.raises(ArtifactError, match="different checkpoint"):
        steer.attach(other_model)
    with pytest.raises(ArtifactError, match="different checkpoint"):
        steer.generate(other_model, prompts)
    deep = SafetyProber(64, ProberConfig(kind="linear"), layers=7)
    with pytest.raises(LayerIndexError, match=r"0\.\.3"):
        AutoSteer(deep, RefusalHead(64)).attach(tiny_llava)
    inputs = encode_prompts(tiny_llava, prompts)
    with pytest.raises(InvalidInputError, match="steps=max_new_tokens"), torch.no_grad():  # noqa: SIM117
        with tiny_llava.generate(**inputs, max_new_tokens=2) as tracer:  # nnsight captures this block's body
            steer.apply(tiny_llava, tracer)


def test_fit_runs_the_whole_pipeline(tiny_llava):
    pairs = builtin_pairs()[:30]
    steer = AutoSteer.fit(
        tiny_llava,
        pairs,
        candidate_layers=[1, 2, 3],
        probe_layers=2,
        prober_config=ProberConfig(kind="linear", epochs=5),
        head_config=RefusalHeadConfig(epochs=1),
        builtin_gate_data=False,  # the built-in gate data is exercised on the real model (tests/real)
        gate_benign=[Prompt(f"How do I kill process {i} on Linux?") for i in range(10)],
        calibrate_fpr=0.1,
        progress=False,
    )
    summary = steer.summary
    assert list(steer.layers) == summary.layers == sorted(summary.sas.top_k(2))
    assert len(summary.head_loss) == 1 and set(summary.seconds) == {"activations_and_sas", "gate", "refusal_head"}
    assert summary.flagged["val_negatives"] <= 0.1 and steer.threshold == summary.validation.threshold
    counts = summary.gate_data
    assert counts["train_harmful"] + counts["val_harmful"] == 30 and counts["val_harmful"] == 6
    assert counts["train_wrapped_safe"] == counts["train_harmful"] and counts["val_negatives"] == 2


def test_fit_collects_probe_layers_outside_the_candidates(tiny_llava):
    pairs = builtin_pairs()[:12]
    options = dict(
        prober_config=ProberConfig(kind="logistic"),
        head_config=RefusalHeadConfig(epochs=1),
        builtin_gate_data=False,
        wrap_pairs=False,
        progress=False,
    )
    outside = AutoSteer.fit(tiny_llava, pairs, candidate_layers=[1, 2], probe_layers=[3], **options)
    reused = AutoSteer.fit(tiny_llava, pairs, candidate_layers=[1, 2, 3], probe_layers=[3], **options)
    assert outside.layers == reused.layers == (3,)
    prompts = [p.harmful for p in pairs[:4]]
    acts = collect_activations(tiny_llava, prompts, [3], progress=False).values
    # Both gates standardise with the statistics of the same layer-3 activations (up to float noise) ...
    assert torch.allclose(outside.prober.mean, reused.prober.mean, atol=1e-5)
    assert torch.allclose(outside.prober.std, reused.prober.std, rtol=1e-4)
    # ... and decide alike; lbfgs (tolerance 1e-4) stops the two logistic fits a little apart, by up to ~0.01 here
    assert torch.equal(outside.prober.predict(acts), reused.prober.predict(acts))
    assert torch.allclose(outside.p_harmful(acts), reused.p_harmful(acts), atol=3e-2)
    with pytest.raises(InvalidInputError, match="probe_layers=5 must be between 1 and the 2 candidate layers"):
        AutoSteer.fit(tiny_llava, pairs, candidate_layers=[1, 2], probe_layers=5, **options)


def test_attach_restores_a_generate_someone_else_set_on_the_instance(tiny_llava):
    hf = tiny_llava._module
    calls = []

    def counting_generate(*args, **kwargs):
        calls.append(1)
        return type(hf).generate(hf, *args, **kwargs)

    hf.generate = counting_generate
    try:
        steer, _ = make_steer(tiny_llava, mixed_batch())
        with steer.attach(tiny_llava):
            hf.generate(**encode_prompts(tiny_llava, [Prompt("Hi")]), max_new_tokens=1)
        assert hf.__dict__["generate"] is counting_generate and calls == [1]
    finally:
        del hf.generate
