"""Entity-level precision, recall and F1 of BIO, IOBES or BILOU tag sequences (the CoNLL / seqeval "strict span"
definition: an entity counts only if its type and both boundaries match), plus token accuracy: a local `evaluate`
metric module. Load with `evaluate.load("examples/metrics/entity_f1")`."""

import datasets
import evaluate

INSIDE = ("I", "E", "L")  # tags that continue an open entity of their type (E-, L-: as its last token)
LAST = ("E", "L", "S", "U")  # tags that end their entity (S-, U-: an entity of one token)


def entity_spans(tags):
    """Set of (type, start, end) spans of a tag sequence: a B- tag starts an entity; an I-, E- or L- tag continues an
    open entity of its type, or else starts one; E-, L-, S- and U- tags end theirs. BIO and IOBES tags are read as
    seqeval's default mode (and conlleval) reads them; BILOU tags, which that mode does not know, as their scheme
    defines them."""
    spans, start, kind = set(), None, None
    for position, tag in enumerate([*tags, "O"]):
        prefix, _, tag_type = tag.partition("-")
        continues = prefix in INSIDE and tag_type == kind
        if start is not None and not continues:
            spans.add((kind, start, position))
            start, kind = None, None
        if prefix in ("B", *INSIDE, *LAST) and not continues:
            start, kind = position, tag_type
        if start is not None and prefix in LAST:
            spans.add((kind, start, position + 1))
            start, kind = None, None
    return spans


class EntityF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Entity-level precision / recall / F1 of BIO, IOBES or BILOU tags, and token accuracy.",
            citation="",
            inputs_description="predictions, references: one list of tag strings per sentence.",
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references):
        true_positives = predicted = actual = correct_tokens = total_tokens = 0
        for predicted_tags, reference_tags in zip(predictions, references):
            predicted_spans, reference_spans = entity_spans(predicted_tags), entity_spans(reference_tags)
            true_positives += len(predicted_spans & reference_spans)
            predicted += len(predicted_spans)
            actual += len(reference_spans)
            correct_tokens += sum(p == r for p, r in zip(predicted_tags, reference_tags))
            total_tokens += len(reference_tags)
        precision = true_positives / predicted if predicted else 0.0
        recall = true_positives / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "accuracy": correct_tokens / max(total_tokens, 1)}
