"""Regression metrics (mean squared error, mean absolute error, and Pearson correlation where it is defined): a
local `evaluate` metric module. Load with `evaluate.load("examples/metrics/regression")`."""

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
        scores = {"mse": float(np.mean(errors**2)), "mae": float(np.mean(np.abs(errors)))}
        # Pearson's correlation divides by both standard deviations: left out where one is zero, as for a single
        # example or constant predictions (numpy gives NaN, which JSON has no value for, and a None value stops
        # Trainer's `log_metrics`, which formats every value as a number, after training).
        if predictions.std() > 0 and references.std() > 0:
            scores["pearson"] = float(np.corrcoef(predictions, references)[0, 1])
        return scores
