"""Accuracy, the fraction of predictions equal to their references: a local `evaluate` metric module (the hub's
`accuracy` cannot be loaded offline). Load with `evaluate.load("examples/metrics/accuracy")`."""

import datasets
import evaluate
import numpy as np


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Fraction of predictions equal to their references.",
            citation="",
            inputs_description="predictions, references: class indices, one per example.",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references)))}
