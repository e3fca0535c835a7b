"""torch.compile for every mixer and family: mixers compile to one graph (fullgraph), and compiled models give the
eager outputs and gradients. The CPU backend here is aot_eager (traced forward and backward graphs without
generating C++), which keeps CI fast; scripts/benchmark.py --compile measures inductor. The deployment paths,
`torch.export` and ONNX export run by onnxruntime, give the eager outputs."""

import pytest
import torch
from conftest import FAMILIES, model_class, tiny_config

from fourierformers.spectral_layers import AFNOMixer, FourierMixer, GlobalFilter, lowest_modes

MIXERS = {
    "fourier": lambda: FourierMixer((16,)),
    "fourier_short": lambda: FourierMixer((16,)),
    "global_filter": lambda: GlobalFilter(8, (16,)),
    "global_filter_short": lambda: GlobalFilter(8, (16,)),
    "afno": lambda: AFNOMixer(8, (16,), num_blocks=2, kept_modes=[lowest_modes(16, 5, half=True)]),
    "global_filter_2d": lambda: GlobalFilter(8, (4, 6)),
}
# the short-input paths run for 5 tokens in an FFT of 16
GRIDS = {"fourier": (14,), "fourier_short": (5,), "global_filter": (11,), "global_filter_short": (5,), "afno": (11,),
         "global_filter_2d": (3, 5)}


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", list(MIXERS))
def test_mixer_compiles_without_graph_breaks(name):
    mixer = MIXERS[name]()
    for parameter in mixer.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    grid = GRIDS[name]
    x = torch.randn(2, *grid, 8, requires_grad=True)
    mask = torch.ones(2, *grid, dtype=torch.bool)
    mask[1, -1] = False
    explanation = torch._dynamo.explain(mixer)(x, mask)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(mixer, backend="aot_eager", fullgraph=True)
    eager_out, compiled_out = mixer(x, mask), compiled(x, mask)
    torch.testing.assert_close(compiled_out, eager_out, atol=1e-5, rtol=1e-5)
    leaves = [x, *mixer.parameters()]
    upstream = torch.randn_like(eager_out)
    for compiled_grad, eager_grad in zip(
        torch.autograd.grad(compiled_out, leaves, upstream), torch.autograd.grad(eager_out, leaves, upstream)
    ):
        torch.testing.assert_close(compiled_grad, eager_grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("padding, pooling", [(None, None), ("right", None), ("left", None), ("left", "attention")])
def test_model_compiles_without_graph_breaks(family, padding, pooling):
    pooling_field = {} if pooling is None else dict(pooling=pooling)
    model = model_class(family, "ForSequenceClassification")(tiny_config(family, **pooling_field)).eval()
    input_ids = torch.randint(5, 99, (2, 9))
    attention_mask = None if padding is None else torch.ones_like(input_ids)
    if padding == "right":
        attention_mask[1, 6:] = 0
    elif padding == "left":
        attention_mask[1, :3] = 0
    explanation = torch._dynamo.explain(model)(input_ids, attention_mask=attention_mask)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    with torch.no_grad():
        compiled = torch.compile(model, backend="eager")(input_ids, attention_mask=attention_mask).logits
        torch.testing.assert_close(compiled, model(input_ids, attention_mask=attention_mask).logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_compiled_model_takes_every_length_in_few_graphs(family):
    """Dynamic padding gives a new length to almost every batch: the graph must not depend on the length's prime
    factors (GFNet's short-input FFT size did: a recompilation per length, then eager past dynamo's limit), and
    inference (no_grad) compiles whole too (GFNet's in-place product broke the graph)."""
    torch._dynamo.reset()  # the recompile limit counts the graphs of earlier tests' models of the same classes
    model = model_class(family, "ForSequenceClassification")(tiny_config(family, max_position_embeddings=64)).eval()
    graphs = []

    def counting_backend(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    compiled = torch.compile(model, backend=counting_backend, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for length in range(3, 40, 2):
            input_ids = torch.randint(5, 99, (2, length))
            torch.testing.assert_close(compiled(input_ids).logits, model(input_ids).logits, atol=1e-5, rtol=1e-5)
    assert len(graphs) <= 3, f"{len(graphs)} graphs for 19 lengths"  # FNet-hybrid: below and above its DFT bound


@pytest.mark.parametrize("family", ["gfnet", "fnet_hybrid"])
def test_adaptive_layout_compiles_whole_with_gradient_checkpointing(family):
    """The gate records its decisions in module attributes, which a checkpointed layer in a compiled graph may not
    write: with fullgraph=True such a model failed to compile."""
    layout = [{"strategy": "adaptive", "mixers": ["fourier", "attention"], "gate": "hard"}, "global_filter"]
    model = model_class(family, "ForSequenceClassification")(tiny_config(family, mixer_layout=layout)).train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    input_ids, labels = torch.randint(5, 99, (2, 9)), torch.tensor([0, 2])
    loss = torch.compile(model, backend="aot_eager", fullgraph=True)(input_ids, labels=labels).loss
    loss.backward()
    torch.testing.assert_close(loss, model(input_ids, labels=labels).loss)


HEAD_LABELS = {
    "ForSequenceClassification": (dict(), dict(labels=torch.tensor([0, 2]))),
    "ForMultiLabel": (dict(problem_type="multi_label_classification"),
                      dict(labels=torch.tensor([[0.0, 1.0, 1.0], [1.0, 0, 0]]))),
    "ForTokenClassification": (dict(), dict(labels=torch.tensor([[0, 1, 2, -100, 1, 0, 2, 1, 0]] * 2))),
    "ForMaskedLM": (dict(), dict(labels=torch.tensor([[-100, 7, -100, -100, 98, -100, -100, -100, 5]] * 2))),
    "ForQuestionAnswering": (dict(),
                             dict(start_positions=torch.tensor([1, 12]), end_positions=torch.tensor([3, -100]))),
    "ForMultipleChoice": (dict(), dict(labels=torch.tensor([2, -100]))),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("head", list(HEAD_LABELS))
def test_loss_compiles_without_graph_breaks(family, head):
    """The labels' range is checked in eager mode only: reading it back split the graph of every training step."""
    fields, labels = HEAD_LABELS[head]
    head_class = "ForSequenceClassification" if head == "ForMultiLabel" else head
    model = model_class(family, head_class)(tiny_config(family, num_labels=3, **fields)).train()
    input_ids = torch.randint(5, 99, (2, 3, 9) if head == "ForMultipleChoice" else (2, 9))
    explanation = torch._dynamo.explain(model)(input_ids, **labels)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    torch.manual_seed(0)
    eager = model(input_ids, **labels).loss
    torch.manual_seed(0)
    torch.testing.assert_close(torch.compile(model, backend="eager")(input_ids, **labels).loss, eager)


@pytest.mark.parametrize("family", FAMILIES)
def test_masked_image_modeling_loss_compiles_without_graph_breaks(family):
    """The mask's 0 / 1 check reads values in eager mode only."""
    config = tiny_config(family, image_size=16, patch_size=4)
    model = model_class(family, "ForMaskedImageModeling")(config).train()
    pixel_values, bool_masked_pos = torch.randn(2, 3, 16, 16), torch.rand(2, 16) < 0.5
    explanation = torch._dynamo.explain(model)(pixel_values, bool_masked_pos.long())
    assert explanation.graph_break_count == 0, explanation.break_reasons
    eager = model(pixel_values, bool_masked_pos).loss
    torch.testing.assert_close(torch.compile(model, backend="eager")(pixel_values, bool_masked_pos).loss, eager)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_compiled_model_matches_eager_forward_and_backward(family):
    model = model_class(family, "ForSequenceClassification")(tiny_config(family)).train()
    compiled = torch.compile(model, backend="aot_eager")
    input_ids = torch.randint(5, 99, (2, 9))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    labels = torch.tensor([0, 2])
    eager = model(input_ids, attention_mask=attention_mask, labels=labels)
    eager_grads = torch.autograd.grad(eager.loss, list(model.parameters()), allow_unused=True)
    traced = compiled(input_ids, attention_mask=attention_mask, labels=labels)
    traced_grads = torch.autograd.grad(traced.loss, list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(traced.logits, eager.logits, atol=1e-5, rtol=1e-5)
    for traced_grad, eager_grad in zip(traced_grads, eager_grads):
        if eager_grad is None:
            assert traced_grad is None
        else:
            torch.testing.assert_close(traced_grad, eager_grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_torch_export_matches_eager(family):
    """`torch.export` (the deployment path; TorchScript's `torch.jit.trace` is not supported) gives the eager outputs
    for batches of the traced shape, whatever their padding: nothing is specialised on the mask's values."""
    model = model_class(family, "ForSequenceClassification")(tiny_config(family)).eval()
    input_ids = torch.randint(5, 99, (2, 9))
    right, left = torch.ones_like(input_ids), torch.ones_like(input_ids)
    right[1, 6:] = 0
    left[0, :4] = 0
    exported = torch.export.export(model, (input_ids,), {"attention_mask": right}).module()
    for attention_mask in (right, left, torch.ones_like(input_ids)):
        with torch.no_grad():
            expected = model(input_ids, attention_mask=attention_mask).logits
        torch.testing.assert_close(exported(input_ids, attention_mask=attention_mask).logits, expected)


def _onnx_session(model, args, kwargs, path, dynamic_shapes=None):
    """`torch.onnx.export` (the dynamo exporter) of `model` (a module or an exported program), run by onnxruntime."""
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.onnx.export(model, args, path, kwargs=kwargs, dynamic_shapes=dynamic_shapes, dynamo=True, verbose=False)
    return onnxruntime.InferenceSession(str(path))


def _text_batches(max_length):
    """(input_ids, attention_mask) pairs of other batch sizes and lengths than the exported one, up to the FFT length,
    with right, left and no padding."""
    batches = []
    for batch_size, length in [(2, 9), (1, 2), (3, 17), (4, max_length)]:
        input_ids = torch.randint(5, 99, (batch_size, length))
        for padding in ("none", "right", "left"):
            attention_mask = torch.ones_like(input_ids)
            if padding == "right":
                attention_mask[-1, length // 2 + 1 :] = 0
            elif padding == "left":
                attention_mask[0, : length // 2] = 0
            batches.append((input_ids, attention_mask))
    return batches


@pytest.mark.parametrize("family", FAMILIES)
def test_export_with_dynamic_batch_and_length_matches_eager(family, tmp_path):
    """One graph, exported once with a dynamic batch size and sequence length (`torch.export` and ONNX through
    onnxruntime), gives the eager outputs for every batch size, length up to `max_position_embeddings` and padding.
    Exported graphs take the full-length FFT path (the short-input shortcuts depend on the length) and wrap the
    left-padding roll without a remainder by the length. ONNX has no complex tensors: the mixers avoid the complex
    ops the exporter cannot rewrite into real ones (unsqueeze, repeat, index_select, matrix products)."""
    config = tiny_config(family)
    model = model_class(family, "ForSequenceClassification")(config).eval()
    input_ids = torch.randint(5, 99, (2, 9))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    batch = torch.export.Dim("batch", min=1, max=64)
    length = torch.export.Dim("length", min=2, max=config.max_position_embeddings)
    dynamic_shapes = {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}}
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    program = torch.export.export(model, (), inputs, dynamic_shapes=dynamic_shapes)
    exported = program.module()
    # an exported program converts to ONNX later as well (AFNO's complex product is real arithmetic in both)
    session = _onnx_session(program, (), inputs, tmp_path / "model.onnx")
    for input_ids, attention_mask in _text_batches(config.max_position_embeddings):
        with torch.no_grad():
            expected = model(input_ids, attention_mask=attention_mask).logits
            torch.testing.assert_close(exported(input_ids=input_ids, attention_mask=attention_mask).logits, expected)
        (logits,) = session.run(None, {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()})
        torch.testing.assert_close(torch.from_numpy(logits), expected, atol=1e-5, rtol=1e-5)


IMAGE_CONFIGS = {
    "plain": dict(image_size=16, patch_size=4),
    "hierarchical": dict(image_size=32, patch_size=4, hidden_sizes=[16, 32], depths=[1, 1], hidden_size=32,
                         num_attention_heads=4),
    "scattered_modes": dict(image_size=16, patch_size=4, afno_kept_modes=[[0, 3], None]),
    "lowest_modes": dict(image_size=16, patch_size=4, afno_num_modes=2),
}


IMAGE_EXPORTS = [(family, "plain") for family in FAMILIES] + [
    ("gfnet", "hierarchical"), ("afno", "scattered_modes"), ("afno", "lowest_modes")
]


@pytest.mark.parametrize("family,variant", IMAGE_EXPORTS)
def test_onnx_export_of_image_models_matches_eager(family, variant, tmp_path):
    """2-D transforms, GFNet-H stages and AFNO's kept modes (gathered and scattered on real views, a leading range
    too), with a dynamic batch size."""
    config = tiny_config(family, **IMAGE_CONFIGS[variant])
    model = model_class(family, "ForImageClassification")(config).eval()
    inputs = {"pixel_values": torch.randn(2, 3, *config.image_shape)}
    dynamic_shapes = {"pixel_values": {0: torch.export.Dim("batch", min=1, max=64)}}
    session = _onnx_session(model, (), inputs, tmp_path / "model.onnx", dynamic_shapes)
    for batch_size in (1, 3):
        pixel_values = torch.randn(batch_size, 3, *config.image_shape)
        with torch.no_grad():
            expected = model(pixel_values).logits
        (logits,) = session.run(None, {"pixel_values": pixel_values.numpy()})
        torch.testing.assert_close(torch.from_numpy(logits), expected, atol=1e-5, rtol=1e-5)
