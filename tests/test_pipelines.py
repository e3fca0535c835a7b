"""transformers pipelines, sentence-transformers and data collators on a saved directory (model + a WordPiece tokenizer
trained here)."""

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForMultipleChoice,
    DataCollatorForMultipleChoice,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
    pipeline,
)

from conftest import FAMILIES, model_class, tiny_config

SENTENCES = [
    "a gripping , beautifully made film",
    "the plot is thin and the acting is worse",
    "one of the best movies of the year",
    "dull , predictable and far too long",
    "funny , warm and surprisingly moving",
] * 4


@pytest.fixture(scope="module")
def tokenizer():
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece.train_from_iterator(SENTENCES, trainers.WordPieceTrainer(vocab_size=99, special_tokens=specials))
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=wordpiece, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=24,
    )


def save(family, head, tokenizer, path, **overrides):
    config = tiny_config(family, vocab_size=len(tokenizer), **overrides)
    model_class(family, head)(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("family", FAMILIES)
def test_text_classification_pipeline(family, tokenizer, tmp_path):
    labels = {0: "negative", 1: "positive"}
    path = save(family, "ForSequenceClassification", tokenizer, tmp_path, num_labels=2, id2label=labels,
                label2id={v: k for k, v in labels.items()})
    results = pipeline("text-classification", model=path)(SENTENCES[:3])
    assert [r["label"] in labels.values() for r in results] == [True] * 3
    assert all(0 <= r["score"] <= 1 for r in results)


@pytest.mark.parametrize("family", FAMILIES)
def test_token_classification_pipeline(family, tokenizer, tmp_path):
    path = save(family, "ForTokenClassification", tokenizer, tmp_path, num_labels=3,
                id2label={0: "O", 1: "B-ADJ", 2: "I-ADJ"})
    results = pipeline("token-classification", model=path)("a gripping , beautifully made film")
    assert all(r["entity"] in {"O", "B-ADJ", "I-ADJ"} for r in results)


@pytest.mark.parametrize("family", FAMILIES)
def test_fill_mask_pipeline(family, tokenizer, tmp_path):
    path = save(family, "ForMaskedLM", tokenizer, tmp_path)
    results = pipeline("fill-mask", model=path, top_k=3)("the plot is [MASK] and the acting is worse")
    assert len(results) == 3 and all("[MASK]" not in r["sequence"] for r in results)


@pytest.mark.parametrize("family", FAMILIES)
def test_multiple_choice_batches_of_transformers_collator_score_each_choice_alone(family, tokenizer, tmp_path):
    """(context, choice) pairs tokenized and padded by `DataCollatorForMultipleChoice`, as in transformers' SWAG
    example: `Trainer.predict` scores every choice as the pair encoded alone, without padding."""
    path = save(family, "ForMultipleChoice", tokenizer, tmp_path)
    model = AutoModelForMultipleChoice.from_pretrained(path).eval()
    contexts = SENTENCES[:3]
    choices = [["funny", "dull , predictable and far too long"], ["the acting", "a film"],
               ["moving", "worse , far worse"]]
    features = [{**tokenizer([context] * 2, pair, truncation=True), "label": index % 2}
                for index, (context, pair) in enumerate(zip(contexts, choices))]
    collator = DataCollatorForMultipleChoice(tokenizer)
    batch = collator(features)
    assert batch["input_ids"].shape[:2] == (3, 2) and not batch["attention_mask"].all()  # padded choices
    arguments = TrainingArguments(tmp_path / "run", per_device_eval_batch_size=3, report_to=[], use_cpu=True)
    scores = Trainer(model, arguments, data_collator=collator).predict(features).predictions

    def score_alone(context, choice):  # one example of one choice, (1, 1, T), no padding
        encoded = tokenizer(context, choice, truncation=True, return_tensors="pt")
        return model(**{name: tensor[None] for name, tensor in encoded.items()}).logits.item()

    with torch.no_grad():
        alone = [[score_alone(context, choice) for choice in pair] for context, pair in zip(contexts, choices)]
    torch.testing.assert_close(torch.as_tensor(scores), torch.tensor(alone), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_feature_extraction_pipeline_matches_the_model(family, tokenizer, tmp_path):
    path = save(family, "Model", tokenizer, tmp_path)
    extractor = pipeline("feature-extraction", model=path)
    sentence = "funny , warm and surprisingly moving"
    features = torch.tensor(extractor(sentence))
    encoded = tokenizer(sentence, return_tensors="pt")
    with torch.no_grad():
        expected = extractor.model(**encoded).last_hidden_state
    torch.testing.assert_close(features, expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_sentence_transformers_embeddings_do_not_depend_on_the_batch(family, tokenizer, tmp_path):
    """A saved backbone as a sentence-transformers embedder (mean pooling): a sentence's embedding alone equals its
    embedding in any padded batch, the saved embedder reloads to the same embeddings, and a `max_seq_length`
    beyond the model's length is an error naming both."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    folder = save(family, "Model", tokenizer, tmp_path / "model")
    tokenizer_config = Path(folder, "tokenizer_config.json")  # a tokenizer saved for longer texts than the model's
    tokenizer_config.write_text(json.dumps({**json.loads(tokenizer_config.read_text()), "model_max_length": 512}))
    embedder = sentence_transformers.SentenceTransformer(folder, device="cpu")
    assert embedder.max_seq_length == 24
    sentences = [*SENTENCES[:5], " ".join(SENTENCES[:5])]  # the last one truncated to 24 tokens
    batched = embedder.encode(sentences, batch_size=3, convert_to_tensor=True)
    alone = torch.stack([embedder.encode(sentence, convert_to_tensor=True) for sentence in sentences])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    embedder.save(str(tmp_path / "embedder"))
    reloaded = sentence_transformers.SentenceTransformer(str(tmp_path / "embedder"), device="cpu")
    torch.testing.assert_close(reloaded.encode(sentences, convert_to_tensor=True), batched, atol=1e-6, rtol=0)
    embedder.max_seq_length = 64
    with pytest.raises(ValueError, match="Sequence length 64 exceeds max_position_embeddings=24"):
        embedder.encode(" ".join(SENTENCES))
