# -*- coding: utf-8 -*-
"""Trainers: the one for KGIN, and a mixin that every model run through this package gets.

The mixin changes nothing in what RecBole trains or evaluates. It

* reloads RecBole checkpoints on torch >= 2.6, where ``torch.load`` defaults to
  ``weights_only=True`` and cannot read the pickled RecBole ``Config`` a checkpoint holds
  (checkpoints are pickles written by this trainer: load only files you trust);
* records the wall time of every training epoch and every validation result, so that comparisons
  and searches report the same numbers from one place.
"""

import time

import torch

from recbole.trainer import Trainer
from recbole.utils import KGDataLoaderState


def load_checkpoint(path, device="cpu"):
    """Read a checkpoint written by RecBole's trainer (a pickle holding the run's Config)."""
    return torch.load(str(path), map_location=device, weights_only=False)


class _LastStructEvaluator:
    """RecBole's evaluator, keeping the data it last evaluated (the top-K hits of every user), so
    that per-user metrics can be computed after an evaluation without ranking again."""

    def __init__(self, evaluator):
        self.evaluator = evaluator
        self.last_struct = None

    def evaluate(self, struct):
        self.last_struct = struct
        return self.evaluator.evaluate(struct)


class RecordingTrainerMixin:
    """Put in front of any RecBole trainer class (see :func:`recbole_kgin.utils.get_trainer`)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        # RecBole's TraditionalTrainer (Pop, ItemKNN, EASE, ...) forces one epoch after the eval step
        # was set: with eval_step > epochs no validation (and no checkpoint) would ever happen
        self.eval_step = min(self.eval_step, self.epochs)
        self.evaluator = _LastStructEvaluator(self.evaluator)
        self.epoch_seconds = []  # wall time of every training epoch
        self.valid_history = []  # (epoch index, valid score, valid result) per validation
        self.epoch_callback = None  # optional f(epoch_idx, valid_score, valid_result)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = time.perf_counter()
        result = super()._train_epoch(
            train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress
        )
        self.epoch_seconds.append(time.perf_counter() - start)
        return result

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        epoch_idx = len(self.epoch_seconds) - 1
        self.valid_history.append((epoch_idx, float(valid_score), dict(valid_result)))
        if self.epoch_callback is not None:
            self.epoch_callback(epoch_idx, float(valid_score), dict(valid_result))
        return valid_score, valid_result

    def _restore_weights(self, checkpoint):
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))

    def resume_checkpoint(self, resume_file):
        checkpoint = load_checkpoint(resume_file, self.device)
        self.saved_model_file = str(resume_file)
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        if checkpoint["config"]["model"].lower() != self.config["model"].lower():
            self.logger.warning(
                f"checkpoint {resume_file} was written by model {checkpoint['config']['model']}"
            )
        self._restore_weights(checkpoint)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            checkpoint_file = model_file or self.saved_model_file
            self._restore_weights(load_checkpoint(checkpoint_file, self.device))
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(
            eval_data, load_best_model=False, model_file=model_file, show_progress=show_progress
        )


class KGINTrainer(Trainer):
    """KGIN learns from user-item pairs only: the knowledge graph enters through propagation, so the
    loader runs in RS mode and no KG triplet batches are sampled (RecBole's default KG trainer would
    sample and discard one per step)."""

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        train_data.set_mode(KGDataLoaderState.RS)
        return super()._train_epoch(
            train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress
        )
