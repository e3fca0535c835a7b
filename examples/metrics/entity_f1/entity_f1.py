"""Entity-level precision, recall and F1 of BIO tag sequences (the CoNLL / seqeval "strict span" definition: an
entity counts only if its type and both boundaries match), plus token accuracy: a local `evaluate` metric module.
Load with `evaluate.load("examples/metrics/entity_f1")`."""

import datasets
import evaluate


def entity_spans(tags):
    """Set of (type, start, end) spans of a BIO tag sequence; an I- tag that does not continue an entity of its
    type starts a new one (as conlleval does)."""
    spans, start, kind = set(), None, None
    for position, tag in enumerate([*tags, "O"]):
        prefix, _, tag_type = tag.partition("-")
        continues = prefix == "I" and tag_type == kind
        if start is not None and not continues:
            spans.add((kind, start, position))
            start, kind = None, None
        if prefix in ("B", "I") and not continues:
            start, kind = position, tag_type
    return spans


class EntityF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Entity-level precision / recall / F1 of BIO tags, and token accuracy.",
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
