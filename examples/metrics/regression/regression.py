"""Regression metrics (mean squared error, mean absolute error, Pearson correlation): a local `evaluate` metric
module. Load with `evaluate.load("examples/metrics/regression")`."""

import datasets
import evaluate
import numpy as np


class Regression(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Mean squared error, mean absolute error and Pearson correlation of scalar predictions.",
            citation="",
            inputs_description="predictions, references: one float per example.",
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions), np.asarray(references)
        errors = predictions - references
        return {
            "mse": float(np.mean(errors**2)),
            "mae": float(np.mean(np.abs(errors))),
            "pearson": float(np.corrcoef(predictions, references)[0, 1]),
        }
